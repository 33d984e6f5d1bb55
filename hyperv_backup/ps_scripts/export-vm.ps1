# hyperv-backup-script: export-vm
<#
.SYNOPSIS
    Export mode: exports a whole VM, disks and every checkpoint included, and lists the files
    written.
.PARAMETER VMName
    The VM's exact name (wildcard characters are taken literally).
.PARAMETER Destination
    The folder to export into; the export is the one subfolder Export-VM creates there.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    The backup checkpoint, taken before, is among the exported checkpoints and marks the
    consistent point. Hyper-V's own failures are reported as they are (kind 'unexpected',
    Hyper-V's message and FullyQualifiedErrorId), so that the management side can tell a
    conflicting operation, which it retries; a full disk is kind 'insufficient_space', and
    an export that does not look as it should is kind 'export'. A failed export's folder is
    removed, so that a retry does not trip over it.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][string]$Destination
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

function Remove-NewFolder {
    # A half-written export would make the next attempt fail on the folder it left behind.
    # Best effort: this runs while a failure is being reported.
    param([string]$Destination, [hashtable]$Before)
    foreach ($folder in @(Get-ChildItem -LiteralPath $Destination -Directory -Force)) {
        if (-not $Before.ContainsKey($folder.Name)) {
            try {
                Remove-Item -LiteralPath $folder.FullName -Recurse -Force
            }
            catch {
                Write-Verbose -Message "Could not remove '$($folder.FullName)': $($_.Exception.Message)"
            }
        }
    }
}

function Get-ExportRole {
    # By folder of the Export-VM layout, and by extension inside 'Virtual Machines'.
    param([string]$RelativePath)
    $folder = $RelativePath.Split('\')[0]
    if ($folder -eq 'Snapshots') {
        return 'checkpoint_configuration'
    }
    if ($folder -eq 'Virtual Hard Disks') {
        return 'disk'
    }
    if ($folder -eq 'Virtual Machines') {
        switch ([System.IO.Path]::GetExtension($RelativePath).ToLowerInvariant()) {
            '.vmcx' { return 'configuration' }
            '.xml' { return 'configuration' }
            '.vmgs' { return 'configuration' }
            '.vmrs' { return 'runtime_state' }
            '.bin' { return 'runtime_state' }
            '.vsv' { return 'runtime_state' }
        }
    }
    return 'other'
}

function Get-ExportFile {
    param([string]$Folder)
    $base = $Folder.TrimEnd('\')
    foreach ($item in @(Get-ChildItem -LiteralPath $Folder -File -Recurse -Force)) {
        $relative = $item.FullName.Substring($base.Length).TrimStart('\')
        [ordered]@{
            path          = $item.FullName
            relative_path = $relative
            size          = [long]$item.Length
            role          = Get-ExportRole -RelativePath $relative
        }
    }
}

try {
    $vm = Get-TargetVM -Name $VMName

    if (-not (Test-Path -LiteralPath $Destination -PathType Container)) {
        New-Item -ItemType 'Directory' -Path $Destination -Force | Out-Null
    }
    # Export-VM names its folder after the VM, minus what Windows forbids in paths: the
    # folder is found as the one that appears, not built from the name.
    $before = @{}
    foreach ($folder in @(Get-ChildItem -LiteralPath $Destination -Directory -Force)) {
        $before[$folder.Name] = $true
    }

    try {
        Export-VM -VM $vm -Path $Destination
    }
    catch {
        $cause = $_
        Remove-NewFolder -Destination $Destination -Before $before
        # ERROR_DISK_FULL / ERROR_HANDLE_DISK_FULL: the codes read the same on every host.
        if ($cause.Exception.Message -match '0x80070070|0x80070027') {
            $kind = 'insufficient_space'
            throw (New-Failure -Kind $kind -Message $cause.Exception.Message -Target $Destination -Cause $cause)
        }
        throw $cause
    }

    $created = @(Get-ChildItem -LiteralPath $Destination -Directory -Force |
            Where-Object -FilterScript { -not $before.ContainsKey($_.Name) })
    if ($created.Count -ne 1) {
        $message = "Export-VM of virtual machine '$VMName' reported success, but " +
            "$($created.Count) new folders appeared in '$Destination' instead of one."
        throw (New-Failure -Kind 'export' -Message $message -Target $Destination)
    }
    $exportFolder = $created[0].FullName

    $result = [ordered]@{
        path  = $exportFolder
        files = @(Get-ExportFile -Folder $exportFolder)
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
