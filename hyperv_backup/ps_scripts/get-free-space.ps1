# hyperv-backup-script: get-free-space
<#
.SYNOPSIS
    Reports the free space of the volume (or share) that holds each path, so that a restore
    onto the host can refuse before it writes anything.
.PARAMETER Path
    Folders on the host (they need not exist yet: each is measured at the nearest folder
    that does). A folder on a share is measured as the share reports its free space.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    Read-only: nothing is created. Each entry names its volume (the volume's unique id, or
    \\server\share for a share), so that the caller adds up what several paths on one volume
    need. A path on no volume or share the host can reach fails with kind 'unexpected'.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string[]]$Path
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

function Get-VolumeSpace {
    # The volume (or share) that holds Path and its free bytes, measured at the nearest folder
    # that exists (as new-staging-folder measures its staging root).
    param([string]$Path)
    $probe = $Path
    while (-not (Test-Path -LiteralPath $probe -PathType Container)) {
        $parent = [System.IO.Path]::GetDirectoryName($probe)
        if (-not $parent) {
            $message = "'$Path' is on no volume or share that host $env:COMPUTERNAME can " +
                "reach (a share also needs the connecting account's credentials to reach it " +
                "from the host)."
            throw (New-Failure -Kind 'unexpected' -Message $message -Target $Path)
        }
        $probe = $parent
    }
    if ($probe.StartsWith('\\')) {
        # Get-Volume knows local volumes only, and DriveInfo drive letters only.
        $fileSystem = New-Object -ComObject 'Scripting.FileSystemObject'
        $driveName = $fileSystem.GetDriveName($probe)
        $share = $fileSystem.GetDrive($driveName)
        return [ordered]@{
            path       = $Path
            volume     = [string]$driveName
            free_bytes = [double]$share.AvailableSpace
        }
    }
    # -FilePath finds the volume that holds the folder, also behind a mount point or a CSV;
    # its UniqueId tells two paths on one volume apart from two volumes.
    $volume = Get-Volume -FilePath $probe
    return [ordered]@{
        path       = $Path
        volume     = [string]$volume.UniqueId
        free_bytes = [double]$volume.SizeRemaining
    }
}

try {
    $volumes = @(foreach ($item in $Path) { Get-VolumeSpace -Path $item })
    $result = [ordered]@{ volumes = $volumes }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 5 -Compress
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
