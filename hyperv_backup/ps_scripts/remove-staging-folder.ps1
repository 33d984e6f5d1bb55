# hyperv-backup-script: remove-staging-folder
<#
.SYNOPSIS
    Deletes a staging folder, and its job folder (hyperv-backup-<job id>) once that is empty.
.PARAMETER Path
    The staging folder, <root>\hyperv-backup-<job id>\<VM id>, or a whole job folder
    <root>\hyperv-backup-<job id> (the cleanup sweep removes those). Any other path is
    refused, so that a wrong path can never delete user data.
    A folder that does not exist is not an error: removed=false.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    Links inside the folder (the shadow-copy links of the pause mode, for instance) are
    removed as links and never followed: Windows PowerShell 5.1's Remove-Item -Recurse would
    descend into a directory link and delete the files it points to.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Path
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

function Test-Link {
    param($Item)
    return [bool]($Item.Attributes -band [System.IO.FileAttributes]::ReparsePoint)
}

function Remove-Tree {
    # Depth first; a link (symbolic link, junction) is deleted itself, never what it points to:
    # DirectoryInfo.Delete() without recursion removes only the link.
    param([string]$Folder)
    foreach ($item in @(Get-ChildItem -LiteralPath $Folder -Force)) {
        if (Test-Link -Item $item) {
            $item.Delete()
        }
        elseif ($item.PSIsContainer) {
            Remove-Tree -Folder $item.FullName
        }
        else {
            Remove-Item -LiteralPath $item.FullName -Force
        }
    }
    Remove-Item -LiteralPath $Folder -Force
}

try {
    # GetFullPath resolves '..' and '.', so 'X\hyperv-backup-1\..\..\Users' is judged as what
    # it really names.
    $full = [System.IO.Path]::GetFullPath($Path).TrimEnd('\')
    $parent = [System.IO.Path]::GetDirectoryName($full)
    $parentName = ''
    if ($parent) {
        $parentName = [System.IO.Path]::GetFileName($parent)
    }
    $leaf = [System.IO.Path]::GetFileName($full)
    $isJobFolder = ($leaf -like 'hyperv-backup-*') -and ($parentName -notlike 'hyperv-backup-*')
    if ((-not $leaf) -or ((-not $isJobFolder) -and ($parentName -notlike 'hyperv-backup-*'))) {
        $message = "Refusing to delete '$Path': a staging folder is " +
            "<staging root>\hyperv-backup-<job id>[\<VM id>], and neither this folder nor " +
            "its parent ('$parentName') is named hyperv-backup-*. Nothing was deleted."
        throw (New-Failure -Kind 'unexpected' -Message $message -Target $Path)
    }

    if (-not (Test-Path -LiteralPath $full)) {
        $result = [ordered]@{ removed = $false; seconds = 0.0 }
        [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 4 -Compress
        return
    }

    $stopwatch = [System.Diagnostics.Stopwatch]::StartNew()
    $item = Get-Item -LiteralPath $full -Force
    if (Test-Link -Item $item) {
        $item.Delete()
    }
    elseif ($item.PSIsContainer) {
        Remove-Tree -Folder $item.FullName
    }
    else {
        $message = "Refusing to delete '$Path': it is a file, not a staging folder. Nothing was deleted."
        throw (New-Failure -Kind 'unexpected' -Message $message -Target $Path)
    }

    # The job's folder goes too once its last VM folder is gone.
    if ((-not $isJobFolder) -and (@(Get-ChildItem -LiteralPath $parent -Force).Count -eq 0)) {
        # Another VM of the same job may be creating its folder right now (VMs run in
        # parallel): then the job folder stays, and that VM's removal takes it away.
        try {
            Remove-Item -LiteralPath $parent -Force
        }
        catch {
            $null = $_
        }
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
