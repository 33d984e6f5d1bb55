# hyperv-backup-script: new-backup-checkpoint
<#
.SYNOPSIS
    Takes the backup's own checkpoint of a VM, of the type the backup asks for, and puts the
    VM's checkpoint setting back afterwards.
.PARAMETER VMName
    The VM's exact name (wildcard characters are taken literally).
.PARAMETER CheckpointName
    The name to give the checkpoint.
.PARAMETER CheckpointType
    'ProductionOnly' (application-consistent or nothing) or 'Standard'.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    Checkpoint-VM has no type parameter: it takes the type set on the VM. The VM is set to
    CheckpointType for the duration and set back in a finally block, on the host, so the
    setting is restored even if the management side goes away. A VM whose checkpoints are
    Disabled is refused: that is an administrator's decision.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][string]$CheckpointName,
    [Parameter(Mandatory = $true)][ValidateSet('ProductionOnly', 'Standard')][string]$CheckpointType
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 adds an ETS "Count" member to arrays that makes ConvertTo-Json emit
# {"value": [...], "Count": n}; removing the type data restores plain JSON arrays.
Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue

function New-Failure {
    # An exception that carries the envelope's error kind to the catch at the bottom; with a
    # Cause, Hyper-V's own FullyQualifiedErrorId goes along.
    param([string]$Kind, [string]$Message, [string]$Target = '', $Cause = $null)
    $exception = New-Object -TypeName 'System.Exception' -ArgumentList $Message
    $exception.Data['hyperv-backup.kind'] = $Kind
    $exception.Data['hyperv-backup.target'] = $Target
    if ($null -ne $Cause) {
        $exception.Data['hyperv-backup.fqid'] = [string]$Cause.FullyQualifiedErrorId
    }
    return $exception
}

function Get-TargetVM {
    # Get-VM -Name treats [ ] * ? as wildcards; comparing names finds 'web[1]' as written.
    param([string]$Name)
    $found = @(Get-VM | Where-Object -FilterScript { $_.Name -eq $Name })
    if ($found.Count -eq 0) {
        $message = "No virtual machine named '$Name' exists on host $env:COMPUTERNAME."
        throw (New-Failure -Kind 'vm_not_found' -Message $message -Target $Name)
    }
    if ($found.Count -gt 1) {
        $message = "$($found.Count) virtual machines are named '$Name' on host " +
            "$env:COMPUTERNAME; give them unique names so that a backup knows which one to take."
        throw (New-Failure -Kind 'unexpected' -Message $message -Target $Name)
    }
    return $found[0]
}

try {
    $vm = Get-TargetVM -Name $VMName

    # Server 2012 R2 has no CheckpointType property: it knows standard checkpoints only.
    $originalType = [string]$vm.CheckpointType
    if (-not $originalType) {
        $originalType = 'Standard'
    }
    if ($originalType -eq 'Disabled') {
        $message = "Checkpoints are disabled for virtual machine '$VMName' (its checkpoint " +
            "type is 'Disabled'). hyperv-backup does not override that setting; enable " +
            "checkpoints (Set-VM -CheckpointType Production) or exclude the VM from the backup."
        throw (New-Failure -Kind 'checkpoint' -Message $message -Target $VMName)
    }

    $changed = $false
    $checkpoint = $null
    try {
        if ($originalType -ne $CheckpointType) {
            Set-VM -VM $vm -CheckpointType $CheckpointType
            $changed = $true
        }
        try {
            $checkpoint = Checkpoint-VM -VM $vm -SnapshotName $CheckpointName -Passthru
        }
        catch {
            # ProductionOnly fails instead of falling back to a standard checkpoint: the guest
            # could not take a VSS snapshot. Other causes (a conflicting operation...) are
            # classified on the management side from Hyper-V's message.
            if ($CheckpointType -eq 'ProductionOnly') {
                $kind = 'production_checkpoint_failed'
                throw (New-Failure -Kind $kind -Message $_.Exception.Message -Target $VMName -Cause $_)
            }
            throw
        }
    }
    finally {
        if ($changed) {
            try {
                Set-VM -VM $vm -CheckpointType $originalType
            }
            catch {
                $message = "Could not set the checkpoint type of virtual machine '$VMName' " +
                    "back to '$originalType' (it is '$CheckpointType' now): $($_.Exception.Message)"
                throw (New-Failure -Kind 'unexpected' -Message $message -Target $VMName -Cause $_)
            }
        }
    }

    if (($null -eq $checkpoint) -or ([string]$checkpoint.Name -ne $CheckpointName)) {
        # Should -Passthru not return the checkpoint, the newest of that name is it.
        $checkpoint = @(Get-VMSnapshot -VM $vm | Where-Object -FilterScript { $_.Name -eq $CheckpointName }) |
            Sort-Object -Property 'CreationTime' -Descending |
            Select-Object -First 1
    }
    if ($null -eq $checkpoint) {
        $message = "Checkpoint-VM reported no error, but virtual machine '$VMName' has no " +
            "checkpoint named '$CheckpointName'."
        throw (New-Failure -Kind 'checkpoint' -Message $message -Target $VMName)
    }

    # The VM's drives now point at the new differencing disks; everything below is frozen.
    $current = Get-VM -Id $vm.Id
    $activeDisks = @(Get-VMHardDiskDrive -VM $current |
            Where-Object -FilterScript { ($null -eq $_.DiskNumber) -and $_.Path } |
            ForEach-Object -Process { [string]$_.Path })

    $result = [ordered]@{
        id                       = [string]$checkpoint.Id
        name                     = [string]$checkpoint.Name
        snapshot_type            = [string]$checkpoint.SnapshotType
        created                  = $checkpoint.CreationTime.ToUniversalTime().ToString('o')
        original_checkpoint_type = $originalType
        active_disks             = $activeDisks
    }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 6 -Compress
}
catch {
    $record = $_
    $kind = 'unexpected'
    $fqid = [string]$record.FullyQualifiedErrorId
    $target = [string]$record.TargetObject
    $data = $record.Exception.Data
    if ($data.Contains('hyperv-backup.kind')) {
        $kind = [string]$data['hyperv-backup.kind']
        $target = [string]$data['hyperv-backup.target']
        if ($data.Contains('hyperv-backup.fqid')) {
            $fqid = [string]$data['hyperv-backup.fqid']
        }
    }
    elseif ($record.Exception -is [System.UnauthorizedAccessException]) {
        $kind = 'access_denied'
    }
    $failure = [ordered]@{
        kind    = $kind
        message = $record.Exception.Message
        fqid    = $fqid
        target  = $target
    }
    [ordered]@{ ok = $false; error = $failure } | ConvertTo-Json -Depth 4 -Compress
}
