# hyperv-backup-script: remove-backup-checkpoint
<#
.SYNOPSIS
    Removes a checkpoint of a VM and waits until Hyper-V has merged its differencing disks.
.PARAMETER VMName
    The VM's exact name (wildcard characters are taken literally).
.PARAMETER CheckpointId
    The checkpoint's id. A checkpoint that no longer exists is not an error: removed=false.
.PARAMETER MergeTimeoutSeconds
    How long to wait for the merge. Past it the script fails (kind 'checkpoint'); Hyper-V
    goes on merging.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    Remove-VMSnapshot returns before the merge is done, and a backup is not finished until it
    is. The merge counts as done when the VM's status no longer mentions merging and none of
    the differencing disks made when the checkpoint was taken is left in the VM's disk chains.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][guid]$CheckpointId,
    [Parameter(Mandatory = $true)][ValidateRange(1, 86400)][int]$MergeTimeoutSeconds
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 adds an ETS "Count" member to arrays that makes ConvertTo-Json emit
# {"value": [...], "Count": n}; removing the type data restores plain JSON arrays.
Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue

function New-Failure {
    # An exception that carries the envelope's error kind to the catch at the bottom.
    param([string]$Kind, [string]$Message, [string]$Target = '')
    $exception = New-Object -TypeName 'System.Exception' -ArgumentList $Message
    $exception.Data['hyperv-backup.kind'] = $Kind
    $exception.Data['hyperv-backup.target'] = $Target
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

function Get-AllCheckpoint {
    # Get-VMSnapshot without -SnapshotType does not list Recovery (backup) checkpoints on every
    # release, so each type is asked for as well; the same checkpoint counts once.
    param($VM)
    $byId = [ordered]@{}
    $types = @('Standard', 'Recovery', 'Planned', 'Missing', 'Replica', 'AppConsistentReplica', 'SyncedReplica')
    foreach ($snapshot in @(Get-VMSnapshot -VM $VM)) {
        $byId[[string]$snapshot.Id] = $snapshot
    }
    foreach ($type in $types) {
        foreach ($snapshot in @(Get-VMSnapshot -VM $VM -SnapshotType $type)) {
            $byId[[string]$snapshot.Id] = $snapshot
        }
    }
    return @($byId.Values)
}

function Get-ChainFile {
    # Every file of the VM's current disk chains, from the attached file down to the base.
    param($VM)
    $chainFiles = New-Object -TypeName 'System.Collections.ArrayList'
    foreach ($drive in @(Get-VMHardDiskDrive -VM $VM)) {
        if (($null -ne $drive.DiskNumber) -or (-not $drive.Path)) {
            continue
        }
        $current = [string]$drive.Path
        $links = 0
        while ($current -and ($links -lt 64)) {
            $links += 1
            [void]$chainFiles.Add($current)
            $current = [string](Get-VHD -Path $current).ParentPath
        }
    }
    return $chainFiles.ToArray()
}

function Test-MergePending {
    # True while Hyper-V is still merging: the status says so (English hosts), or a
    # differencing disk made for the checkpoint is still in one of the VM's chains (any host).
    param([guid]$VMId, [hashtable]$Differencing)
    $vm = Get-VM -Id $VMId
    if ([string]$vm.Status -like '*merg*') {
        return $true
    }
    if ($Differencing.Count -eq 0) {
        return $false
    }
    try {
        foreach ($path in @(Get-ChainFile -VM $vm)) {
            if ($Differencing.ContainsKey($path)) {
                return $true
            }
        }
    }
    catch {
        # A chain read while the merge deletes a file of it: look again in a second.
        return $true
    }
    return $false
}

try {
    $vm = Get-TargetVM -Name $VMName
    $wanted = [string]$CheckpointId
    $checkpoint = @(Get-AllCheckpoint -VM $vm) |
        Where-Object -FilterScript { [string]$_.Id -eq $wanted } |
        Select-Object -First 1
    if ($null -eq $checkpoint) {
        $result = [ordered]@{ removed = $false; seconds = 0.0 }
        [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 4 -Compress
        return
    }

    # The checkpoint's drives point at the frozen files; the differencing disks created when it
    # was taken are the files in the VM's chains whose parent is one of them. Those are what
    # the merge folds away.
    $frozen = @{}
    foreach ($drive in @(Get-VMHardDiskDrive -VMSnapshot $checkpoint)) {
        if (($null -eq $drive.DiskNumber) -and $drive.Path) {
            $frozen[[string]$drive.Path] = $true
        }
    }
    $differencing = @{}
    foreach ($path in @(Get-ChainFile -VM $vm)) {
        $parent = [string](Get-VHD -Path $path).ParentPath
        if ($parent -and $frozen.ContainsKey($parent)) {
            $differencing[$path] = $true
        }
    }

    $stopwatch = [System.Diagnostics.Stopwatch]::StartNew()
    Remove-VMSnapshot -VMSnapshot $checkpoint -Confirm:$false
    while (Test-MergePending -VMId $vm.Id -Differencing $differencing) {
        if ($stopwatch.Elapsed.TotalSeconds -ge $MergeTimeoutSeconds) {
            $message = "The checkpoint '$($checkpoint.Name)' of virtual machine '$VMName' was " +
                "removed, but Hyper-V is still merging its differencing disks after " +
                "$MergeTimeoutSeconds seconds. The merge goes on in the background; the " +
                "backup is complete only when it has finished."
            throw (New-Failure -Kind 'checkpoint' -Message $message -Target $VMName)
        }
        Start-Sleep -Seconds 1
    }

    $result = [ordered]@{ removed = $true; seconds = [double]$stopwatch.Elapsed.TotalSeconds }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 4 -Compress
}
catch {
    $record = $_
    $kind = 'unexpected'
    $target = [string]$record.TargetObject
    if ($record.Exception.Data.Contains('hyperv-backup.kind')) {
        $kind = [string]$record.Exception.Data['hyperv-backup.kind']
        $target = [string]$record.Exception.Data['hyperv-backup.target']
    }
    elseif ($record.Exception -is [System.UnauthorizedAccessException]) {
        $kind = 'access_denied'
    }
    $failure = [ordered]@{
        kind    = $kind
        message = $record.Exception.Message
        fqid    = [string]$record.FullyQualifiedErrorId
        target  = $target
    }
    [ordered]@{ ok = $false; error = $failure } | ConvertTo-Json -Depth 4 -Compress
}
