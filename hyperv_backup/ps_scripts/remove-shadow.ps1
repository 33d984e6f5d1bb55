# hyperv-backup-script: remove-shadow
<#
.SYNOPSIS
    Deletes a shadow copy made by new-paused-shadow, and the link that exposes it.
.PARAMETER ShadowId
    The shadow copy's id (Win32_ShadowCopy.ID).
.PARAMETER LinkPath
    The symbolic link to the shadow copy. Only a link is removed here, never a real folder.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    removed=false when neither the link nor the shadow copy existed any more.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][guid]$ShadowId,
    [Parameter(Mandatory = $true)][string]$LinkPath
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
    $stopwatch = [System.Diagnostics.Stopwatch]::StartNew()
    $removed = $false

    # .NET looks at the link itself, so a link whose shadow copy is already gone is found too
    # (Test-Path would follow it and answer false).
    $link = $null
    if ([System.IO.Directory]::Exists($LinkPath)) {
        $link = New-Object -TypeName 'System.IO.DirectoryInfo' -ArgumentList $LinkPath
    }
    elseif ([System.IO.File]::Exists($LinkPath)) {
        $link = New-Object -TypeName 'System.IO.FileInfo' -ArgumentList $LinkPath
    }
    if ($null -ne $link) {
        if (-not ($link.Attributes -band [System.IO.FileAttributes]::ReparsePoint)) {
            $message = "Refusing to delete '$LinkPath': it is not a link to a shadow copy " +
                "but a real folder or file. Nothing was deleted."
            throw (New-Failure -Kind 'shadow' -Message $message -Target $LinkPath)
        }
        # Delete() without recursion removes the link only, never what it points to.
        $link.Delete()
        $removed = $true
    }

    # Win32_ShadowCopy.ID is '{GUID}'; WQL compares strings without regard to case.
    $shadowKey = $ShadowId.ToString('B')
    $shadow = Get-CimInstance -ClassName 'Win32_ShadowCopy' -Filter "ID='$shadowKey'"
    if ($null -ne $shadow) {
        try {
            $shadow | Remove-CimInstance
        }
        catch {
            $message = "Deleting shadow copy $shadowKey failed: $($_.Exception.Message)"
            throw (New-Failure -Kind 'shadow' -Message $message -Target $shadowKey)
        }
        $removed = $true
    }

    $seconds = 0.0
    if ($removed) {
        $seconds = [double]$stopwatch.Elapsed.TotalSeconds
    }
    $result = [ordered]@{ removed = $removed; seconds = $seconds }
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
