# hyperv-backup-script: get-vm-files
<#
.SYNOPSIS
    Lists every file that makes up a virtual machine right now: its configuration and runtime
    state, each checkpoint's configuration and state, and every file of every disk chain that
    the VM or any of its checkpoints refers to.
.PARAMETER VMName
    The VM's exact name (wildcard characters are taken literally).
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    relative_path is where each file sits in the folder layout Export-VM writes:
    'Virtual Machines\...', 'Snapshots\...', 'Virtual Hard Disks\<file name>'.
    Pass-through disks (DiskNumber set) are physical disks, not files: they are skipped.
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

function Get-ConfigurationRole {
    param([string]$Extension)
    switch ($Extension.ToLowerInvariant()) {
        '.vmcx' { return 'configuration' }
        '.xml' { return 'configuration' }
        '.vmgs' { return 'configuration' }
        '.vmrs' { return 'runtime_state' }
        '.bin' { return 'runtime_state' }
        '.vsv' { return 'runtime_state' }
    }
    return 'other'
}

function Get-IdFile {
    # The files of one configuration (a VM's or a checkpoint's) in Folder: '<Id>.*' beside
    # each other, plus the '<Id>' subfolder where 2012 R2-era versions keep .bin/.vsv state.
    # Each comes back with its path relative to Folder.
    param([string]$Folder, [string]$Id)
    $found = New-Object -TypeName 'System.Collections.ArrayList'
    if (-not (Test-Path -LiteralPath $Folder -PathType Container)) {
        return @()
    }
    foreach ($item in @(Get-ChildItem -LiteralPath $Folder -File -Filter "$Id.*" -Force)) {
        [void]$found.Add(@{ item = $item; relative = $item.Name })
    }
    $subfolder = [System.IO.Path]::Combine($Folder, $Id)
    if (Test-Path -LiteralPath $subfolder -PathType Container) {
        # The folder's name as it is on disk: Hyper-V writes ids in upper case.
        $container = Get-Item -LiteralPath $subfolder -Force
        $base = $container.FullName.TrimEnd('\')
        foreach ($item in @(Get-ChildItem -LiteralPath $subfolder -File -Recurse -Force)) {
            $inside = $item.FullName.Substring($base.Length).TrimStart('\')
            [void]$found.Add(@{ item = $item; relative = "$($container.Name)\$inside" })
        }
    }
    return $found.ToArray()
}

try {
    $vm = Get-TargetVM -Name $VMName
    $vmId = [string]$vm.Id
    $files = New-Object -TypeName 'System.Collections.ArrayList'
    # Path -> $true; PowerShell hashtables compare string keys case-insensitively, as Windows
    # compares paths.
    $listed = @{}

    $configurationRoot = [string]$vm.ConfigurationLocation
    if (-not $configurationRoot) {
        $configurationRoot = [string]$vm.Path
    }
    $machinesFolder = [System.IO.Path]::Combine($configurationRoot, 'Virtual Machines')
    foreach ($entry in @(Get-IdFile -Folder $machinesFolder -Id $vmId)) {
        $item = $entry.item
        if ($listed.ContainsKey($item.FullName)) {
            continue
        }
        $listed[$item.FullName] = $true
        [void]$files.Add([ordered]@{
                path          = $item.FullName
                relative_path = 'Virtual Machines\' + $entry.relative
                size          = [long]$item.Length
                role          = Get-ConfigurationRole -Extension $item.Extension
            })
    }

    $checkpoints = @(Get-AllCheckpoint -VM $vm)
    # A checkpoint's files stay where the snapshot location was when it was taken.
    $snapshotFolders = New-Object -TypeName 'System.Collections.ArrayList'
    $snapshotRoots = @([string]$vm.SnapshotFileLocation) +
        @($checkpoints | ForEach-Object -Process { [string]$_.SnapshotFileLocation })
    foreach ($root in $snapshotRoots) {
        if ($root) {
            $folder = [System.IO.Path]::Combine($root, 'Snapshots')
            if (-not ($snapshotFolders -contains $folder)) {
                [void]$snapshotFolders.Add($folder)
            }
        }
    }
    foreach ($checkpoint in $checkpoints) {
        foreach ($folder in $snapshotFolders) {
            foreach ($entry in @(Get-IdFile -Folder $folder -Id ([string]$checkpoint.Id))) {
                $item = $entry.item
                if ($listed.ContainsKey($item.FullName)) {
                    continue
                }
                $listed[$item.FullName] = $true
                [void]$files.Add([ordered]@{
                        path          = $item.FullName
                        relative_path = 'Snapshots\' + $entry.relative
                        size          = [long]$item.Length
                        role          = 'checkpoint_configuration'
                    })
            }
        }
    }

    # Disks: the VM's drives now and every checkpoint's drives, each followed through its
    # differencing chain (ParentPath) down to the base disk.
    $drives = New-Object -TypeName 'System.Collections.ArrayList'
    $activeDisks = New-Object -TypeName 'System.Collections.ArrayList'
    foreach ($drive in @(Get-VMHardDiskDrive -VM $vm)) {
        if (($null -eq $drive.DiskNumber) -and $drive.Path) {
            [void]$activeDisks.Add([string]$drive.Path)
            [void]$drives.Add([string]$drive.Path)
        }
    }
    foreach ($checkpoint in $checkpoints) {
        foreach ($drive in @(Get-VMHardDiskDrive -VMSnapshot $checkpoint)) {
            if (($null -eq $drive.DiskNumber) -and $drive.Path) {
                [void]$drives.Add([string]$drive.Path)
            }
        }
    }
    foreach ($start in $drives) {
        $current = $start
        $links = 0
        # A file already listed has had its parents listed too.
        while ($current -and -not $listed.ContainsKey($current)) {
            $links += 1
            if ($links -gt 64) {
                throw "The differencing chain of '$start' is longer than 64 files; is it circular?"
            }
            $vhd = Get-VHD -Path $current
            $item = Get-Item -LiteralPath ([string]$vhd.Path) -Force
            $listed[$current] = $true
            $listed[$item.FullName] = $true
            [void]$files.Add([ordered]@{
                    path          = $item.FullName
                    relative_path = 'Virtual Hard Disks\' + $item.Name
                    size          = [long]$item.Length
                    role          = 'disk'
                })
            $current = [string]$vhd.ParentPath
        }
    }

    $result = [ordered]@{
        vm_id        = $vmId
        files        = $files.ToArray()
        active_disks = $activeDisks.ToArray()
    }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 6 -Compress
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
