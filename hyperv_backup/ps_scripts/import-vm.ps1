# hyperv-backup-script: import-vm
<#
.SYNOPSIS
    Imports a VM restored into the Export-VM folder layout as a new VM beside whatever is on
    the host: always a new id, a name no other VM has, every file copied into a folder of
    its own.
.PARAMETER Path
    The restored folder: 'Virtual Machines' holds the configuration (<id>.vmcx, or <id>.xml
    from a Windows Server 2012 R2 host), 'Virtual Hard Disks' the disks, 'Snapshots' the
    checkpoints.
.PARAMETER VirtualMachinePath
    Where the new VM's files go: its configuration and checkpoints under this folder (Hyper-V
    adds 'Virtual Machines' and 'Snapshots'), its disks under '<folder>\Virtual Hard Disks'.
    It must be empty or absent: nothing on the host is ever overwritten.
.PARAMETER NewName
    The new VM's name (Rename-VM after the import); default: the name in the configuration.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.

    Why Import-VM -Copy -GenerateNewId and not -Register (in place): -Register keeps the
    configuration's id (its parameter set has no -GenerateNewId), so it fails, or collides,
    whenever the original VM still exists on the host or in its cluster; and it would make
    the restored files the live VM's, leaving no untouched copy to import again should the
    first boot go wrong. A copy needs the VM's size twice (the caller's preflight counts
    it) and the time of a local copy; in exchange Hyper-V itself lays out the new VM, links
    every copied differencing disk to its copied parent and writes a configuration with the
    new id.

    Compare-VM runs first: every incompatibility it reports (a disk it cannot find, a virtual
    switch this host lacks, a configuration version it cannot run ...) is listed, and the
    import fails with kind 'import' before anything is imported; so does a name that
    another VM has. After the import every disk file of the new VM and of its checkpoints
    must lie under VirtualMachinePath; otherwise its registration is removed again and the
    import fails, so that a copy never runs on the original's disks. Pass-through drives are
    detached from the copy (one physical disk cannot serve two VMs). The new VM is left as
    imported (Off; Saved when the configuration holds saved memory): it is never started.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Path,
    [Parameter(Mandatory = $true)][string]$VirtualMachinePath,
    [string]$NewName
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

function Find-Configuration {
    # The VM's own configuration: the one .vmcx (or, from 2012 R2, .xml) directly in
    # 'Virtual Machines'; the checkpoints' configurations are under 'Snapshots'.
    param([string]$Folder)
    $machines = Join-Path -Path $Folder -ChildPath 'Virtual Machines'
    if (-not (Test-Path -LiteralPath $machines -PathType Container)) {
        $message = "'$Folder' holds no 'Virtual Machines' folder: it is not a restored VM."
        throw (New-Failure -Kind 'import' -Message $message -Target $Folder)
    }
    $files = @(Get-ChildItem -LiteralPath $machines -File -Force)
    # Compared on the extension: -Filter '*.xml' would also match 'a.xmlold' (8.3 names).
    $found = @($files | Where-Object -FilterScript { $_.Extension -eq '.vmcx' })
    if ($found.Count -eq 0) {
        $found = @($files | Where-Object -FilterScript { $_.Extension -eq '.xml' })
    }
    if ($found.Count -ne 1) {
        $message = "Expected one VM configuration (.vmcx, or .xml) in '$machines', found " +
            "$($found.Count). Nothing was imported."
        throw (New-Failure -Kind 'import' -Message $message -Target $machines)
    }
    return $found[0].FullName
}

function Test-Under {
    # True when Path lies inside Folder, compared case-insensitively as Windows does.
    param([string]$Path, [string]$Folder)
    $prefix = $Folder.TrimEnd('\') + '\'
    return $Path.StartsWith($prefix, [System.StringComparison]::OrdinalIgnoreCase)
}

function Get-DiskFile {
    # Every file of every disk chain of the VM and of its checkpoints, parents included.
    param($VM)
    $drives = @(Get-VMHardDiskDrive -VM $VM)
    foreach ($checkpoint in @(Get-VMSnapshot -VM $VM)) {
        $drives += @(Get-VMHardDiskDrive -VMSnapshot $checkpoint)
    }
    foreach ($drive in $drives) {
        if ($null -ne $drive.DiskNumber) {
            continue  # pass-through: no file
        }
        $current = [string]$drive.Path
        $links = 0
        while ($current -and $links -lt 64) {
            $current
            $links += 1
            $current = [string](Get-VHD -Path $current).ParentPath
        }
    }
}

function Invoke-Compare {
    # Compare-VM as Import-VM will run: a copy with a new id, every file under Target.
    param([string]$Configuration, [string]$Source, [string]$Target)
    $disks = Join-Path -Path $Target -ChildPath 'Virtual Hard Disks'
    $sourceDisks = Join-Path -Path $Source -ChildPath 'Virtual Hard Disks'
    try {
        if (Test-Path -LiteralPath $sourceDisks -PathType Container) {
            # Where the restored disks are: Hyper-V takes them from here, not from the paths
            # the configuration names (those are the original VM's).
            return Compare-VM -Path $Configuration -Copy -GenerateNewId `
                -VirtualMachinePath $Target -SnapshotFilePath $Target `
                -SmartPagingFilePath $Target -VhdDestinationPath $disks `
                -VhdSourcePath $sourceDisks
        }
        return Compare-VM -Path $Configuration -Copy -GenerateNewId `
            -VirtualMachinePath $Target -SnapshotFilePath $Target `
            -SmartPagingFilePath $Target -VhdDestinationPath $disks
    }
    catch {
        $cause = $_
        $message = "Compare-VM cannot import the restored configuration '$Configuration': " +
            "$($cause.Exception.Message) Nothing was imported."
        throw (New-Failure -Kind 'import' -Message $message -Target $Configuration -Cause $cause)
    }
}

try {
    $configuration = Find-Configuration -Folder $Path
    $originalId = [System.IO.Path]::GetFileNameWithoutExtension($configuration)
    $parsed = [guid]::Empty
    if (-not [guid]::TryParse($originalId, [ref]$parsed)) {
        $message = "The configuration '$configuration' is not named after its VM id. " +
            'Nothing was imported.'
        throw (New-Failure -Kind 'import' -Message $message -Target $configuration)
    }
    $target = [System.IO.Path]::GetFullPath($VirtualMachinePath).TrimEnd('\')
    $targetExisted = Test-Path -LiteralPath $target
    if ($targetExisted -and @(Get-ChildItem -LiteralPath $target -Force).Count -gt 0) {
        $message = "The import folder '$target' is not empty: a new VM's files never go " +
            'where other files are. Choose an empty or new folder. Nothing was imported.'
        throw (New-Failure -Kind 'import' -Message $message -Target $target)
    }

    $report = Invoke-Compare -Configuration $configuration -Source $Path -Target $target
    $originalName = [string]$report.VM.Name
    $name = $originalName
    if ($NewName) {
        $name = $NewName
    }
    $taken = @(Get-VM | Where-Object -FilterScript { $_.Name -eq $name })
    if ($taken.Count -gt 0) {
        $message = "A virtual machine named '$name' exists on host $env:COMPUTERNAME (id " +
            "$($taken[0].Id)): refusing to import a second one under that name. Give the " +
            'copy a new name. Nothing was imported.'
        throw (New-Failure -Kind 'import' -Message $message -Target $name)
    }
    # Filtered: @($null) would count one incompatibility where the report holds none.
    $problems = @($report.Incompatibilities | Where-Object -FilterScript { $null -ne $_ })
    if ($problems.Count -gt 0) {
        $lines = @(foreach ($problem in $problems) { "[$($problem.MessageId)] $($problem.Message)" })
        $message = "Compare-VM reports $($problems.Count) incompatibility(ies) of " +
            "'$originalName' with host ${env:COMPUTERNAME}: $($lines -join ' ') " +
            'Nothing was imported.'
        throw (New-Failure -Kind 'import' -Message $message -Target $configuration)
    }

    try {
        $imported = Import-VM -CompatibilityReport $report
    }
    catch {
        $cause = $_
        if ((-not $targetExisted) -and (Test-Path -LiteralPath $target)) {
            # A half-copied import would make the next attempt refuse its folder. Best
            # effort: this runs while a failure is being reported.
            try {
                Remove-Item -LiteralPath $target -Recurse -Force
            }
            catch {
                Write-Verbose -Message "Could not remove '$target': $($_.Exception.Message)"
            }
        }
        $kind = 'import'
        # ERROR_DISK_FULL / ERROR_HANDLE_DISK_FULL: the codes read the same on every host.
        if ($cause.Exception.Message -match '0x80070070|0x80070027') {
            $kind = 'insufficient_space'
        }
        $message = "Import-VM of '$originalName' failed: $($cause.Exception.Message)"
        throw (New-Failure -Kind $kind -Message $message -Target $configuration -Cause $cause)
    }

    $warnings = New-Object -TypeName 'System.Collections.ArrayList'
    foreach ($drive in @(Get-VMHardDiskDrive -VM $imported)) {
        if ($null -ne $drive.DiskNumber) {
            Remove-VMHardDiskDrive -VMHardDiskDrive $drive
            $where = "$($drive.ControllerType) $($drive.ControllerNumber):" +
                "$($drive.ControllerLocation)"
            [void]$warnings.Add("Detached the pass-through drive at $where (host disk " +
                "$($drive.DiskNumber)) from the copy: one physical disk cannot serve two VMs.")
        }
    }
    $outside = @(Get-DiskFile -VM $imported |
            Where-Object -FilterScript { -not (Test-Under -Path $_ -Folder $target) })
    if ($outside.Count -gt 0) {
        Remove-VM -VM $imported -Force
        $message = "The imported copy of '$originalName' used disk files outside '$target' " +
            "($($outside -join ', ')): its registration was removed again, so that it never " +
            "runs on another VM's disks (the files under '$target' were kept)."
        throw (New-Failure -Kind 'import' -Message $message -Target $target)
    }
    if ($NewName -and ($imported.Name -cne $NewName)) {
        Rename-VM -VM $imported -NewName $NewName
    }

    $final = Get-VM -Id $imported.Id
    $disks = @(foreach ($drive in @(Get-VMHardDiskDrive -VM $final)) {
            if ($drive.Path) {
                [string]$drive.Path
            }
        })
    $result = [ordered]@{
        id            = [string]$final.Id
        name          = [string]$final.Name
        original_id   = $originalId
        original_name = $originalName
        path          = [string]$final.Path
        disks         = $disks
        state         = [string]$final.State
        warnings      = @($warnings)
    }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 5 -Compress
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
