# hyperv-backup-script: remove-staging-share
<#
.SYNOPSIS
    Removes a staging share (Remove-SmbShare -Force): readers still connected are cut off.
    The shared folder itself is left alone (remove-staging-folder deletes it).
.PARAMETER Name
    The share's name. Only names starting with hyperv-backup- are removed; any other is
    refused, so that a wrong name can never remove one of the host's own shares.
    A share that does not exist is not an error: removed=false.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Name
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

try {
    if ($Name -notlike 'hyperv-backup-*') {
        $message = "Refusing to remove share '$Name': only staging shares (hyperv-backup-*) " +
            "are removed. Nothing was removed."
        throw (New-Failure -Kind 'unexpected' -Message $message -Target $Name)
    }

    # Exact, case-insensitive match: -Name would read wildcard characters as wildcards.
    $share = Get-SmbShare | Where-Object -FilterScript { $_.Name -eq $Name } |
        Select-Object -First 1
    if ($null -eq $share) {
        $result = [ordered]@{ removed = $false; seconds = 0.0 }
        [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 4 -Compress
        return
    }

    $stopwatch = [System.Diagnostics.Stopwatch]::StartNew()
    Remove-SmbShare -InputObject $share -Force
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
