# hyperv-backup-script: resume-vm-replication
<#
.SYNOPSIS
    Resumes a VM's Hyper-V Replica replication after a backup.
.PARAMETER VMName
    The VM's exact name (wildcard characters are taken literally).
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    A VM that is not replicated fails with kind 'replication'. Replication that is not
    suspended is left as it is (a no-op); state_before and state_after say what it was.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$VMName
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

function Get-ReplicationState {
    # An extended relationship yields two objects; the first is the simple one, this host's.
    param($VM)
    $replication = Get-VMReplication -VM $VM | Select-Object -First 1
    return [string]$replication.ReplicationState
}

try {
    $vm = Get-TargetVM -Name $VMName
    $mode = [string]$vm.ReplicationMode
    if ((-not $mode) -or ($mode -eq 'None')) {
        $message = "Virtual machine '$VMName' is not replicated (Hyper-V Replica is not " +
            "enabled for it), so there is no replication to resume."
        throw (New-Failure -Kind 'replication' -Message $message -Target $VMName)
    }

    $before = Get-ReplicationState -VM $vm
    # Only a suspended replication is resumed; any other state is left as it is and reported.
    if ($before -eq 'Suspended') {
        Resume-VMReplication -VM $vm
    }
    $after = Get-ReplicationState -VM $vm

    $result = [ordered]@{ state_before = $before; state_after = $after }
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
