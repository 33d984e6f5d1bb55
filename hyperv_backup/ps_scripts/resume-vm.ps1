# hyperv-backup-script: resume-vm
<#
.SYNOPSIS
    Resumes a paused VM. Cleanup runs this first for a VM that a dead run paused.
.PARAMETER VMName
    The VM's exact name (matched exactly, never as a wildcard).
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    A VM that is not paused is left alone: resuming is idempotent.
#>
[CmdletBinding()]
param(
    [string]$VMName
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 adds an ETS "Count" member to arrays that makes ConvertTo-Json emit
# {"value": [...], "Count": n}; removing the type data restores plain JSON arrays.
Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue

try {
    # Exact match: Get-VM -Name would read [ ] * ? in a VM name as wildcards.
    $vm = Get-VM | Where-Object -FilterScript { $_.Name -eq $VMName } | Select-Object -First 1
    if ($null -eq $vm) {
        $failure = [ordered]@{
            kind    = 'vm_not_found'
            message = "No virtual machine named '$VMName' exists on host $env:COMPUTERNAME."
            fqid    = 'InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM'
            target  = $VMName
        }
        [ordered]@{ ok = $false; error = $failure } | ConvertTo-Json -Depth 4 -Compress
        return
    }
    $before = [string]$vm.State
    if ($before -like 'Paused*') {
        Resume-VM -VM $vm
    }
    $after = [string](Get-VM -Id $vm.Id).State
    $result = [ordered]@{ state_before = $before; state_after = $after }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 4 -Compress
}
catch {
    $record = $_
    $failure = [ordered]@{
        kind    = 'unexpected'
        message = $record.Exception.Message
        fqid    = [string]$record.FullyQualifiedErrorId
        target  = [string]$record.TargetObject
    }
    [ordered]@{ ok = $false; error = $failure } | ConvertTo-Json -Depth 4 -Compress
}
