# hyperv-backup-script: new-staging-folder
<#
.SYNOPSIS
    Creates the staging folder <Root>\hyperv-backup-<JobId>\<VMId> after checking that its
    volume has the space the export needs.
.PARAMETER Root
    The staging root: a local folder (on any volume, mount points included) or a share.
.PARAMETER JobId
    The backup job's id.
.PARAMETER VMId
    The VM's id: one folder per VM under the job's folder.
.PARAMETER RequiredBytes
    The free space needed. Less fails with kind 'insufficient_space' before anything is created.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Root,
    [Parameter(Mandatory = $true)][ValidatePattern('^[A-Za-z0-9-]{4,64}$')][string]$JobId,
    [Parameter(Mandatory = $true)][guid]$VMId,
    [Parameter(Mandatory = $true)][double]$RequiredBytes
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

function Get-FreeSpace {
    # Free bytes of the volume or share that holds Path, measured at the nearest folder that
    # exists (the staging root itself may not exist yet).
    param([string]$Path)
    $probe = $Path
    while (-not (Test-Path -LiteralPath $probe -PathType Container)) {
        $parent = [System.IO.Path]::GetDirectoryName($probe)
        if (-not $parent) {
            $message = "The staging root '$Path' is on no volume or share that host " +
                "$env:COMPUTERNAME can reach (a share also needs the connecting account's " +
                "credentials to reach it from the host)."
            throw (New-Failure -Kind 'unexpected' -Message $message -Target $Path)
        }
        $probe = $parent
    }
    if ($probe.StartsWith('\\')) {
        # Get-Volume knows local volumes only, and DriveInfo drive letters only.
        $fileSystem = New-Object -ComObject 'Scripting.FileSystemObject'
        $share = $fileSystem.GetDrive($fileSystem.GetDriveName($probe))
        return [double]$share.AvailableSpace
    }
    # -FilePath finds the volume that holds the folder, also behind a mount point or a CSV.
    $volume = Get-Volume -FilePath $probe
    return [double]$volume.SizeRemaining
}

try {
    $jobFolder = [System.IO.Path]::Combine($Root, "hyperv-backup-$JobId")
    $path = [System.IO.Path]::Combine($jobFolder, [string]$VMId)

    $free = Get-FreeSpace -Path $Root
    if ($free -lt $RequiredBytes) {
        $gigabyte = 1073741824
        $message = "Not enough free space to stage the export under '$Root': the volume that " +
            "holds it has $([math]::Round($free / $gigabyte, 1)) GiB ($free bytes) free, " +
            "$([math]::Round($RequiredBytes / $gigabyte, 1)) GiB ($RequiredBytes bytes) are " +
            "needed. Choose a staging root on a volume with more free space, or use in-place " +
            "capture, which needs no staging space."
        throw (New-Failure -Kind 'insufficient_space' -Message $message -Target $Root)
    }

    New-Item -ItemType 'Directory' -Path $path -Force | Out-Null
    $created = Get-Item -LiteralPath $path -Force

    $result = [ordered]@{ path = $created.FullName; free_bytes = $free }
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
