# hyperv-backup-script: export-vm-config
<#
.SYNOPSIS
    In-place capture: exports a VM's configuration only (no disks), with every checkpoint's
    configuration and runtime state, and lists the files written.
.PARAMETER VMName
    The VM's exact name (wildcard characters are taken literally).
.PARAMETER CheckpointId
    The backup checkpoint: the consistent point of this backup. It must still exist.
.PARAMETER Destination
    The folder to export into; the export is the one subfolder it creates there.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    No cmdlet exports a configuration without copying the disks (Export-VM and
    Export-VMSnapshot always do), so this calls the WMI method
    Msvm_VirtualSystemManagementService.ExportSystemDefinition with CopyVmStorage off.
    The backup checkpoint's own configuration is in the export's Snapshots folder.
    Hyper-V's own failures are reported with kind 'unexpected' and a Hyper-V
    FullyQualifiedErrorId, so that the management side can tell a conflicting operation,
    which it retries; a full disk is kind 'insufficient_space'; a missing checkpoint or an
    export that does not look as it should is kind 'export'. A failed export's folder is
    removed, so that a retry does not trip over it.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][guid]$CheckpointId,
    [Parameter(Mandatory = $true)][string]$Destination
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 adds an ETS "Count" member to arrays that makes ConvertTo-Json emit
# {"value": [...], "Count": n}; removing the type data restores plain JSON arrays.
Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue

$Namespace = 'root\virtualization\v2'

function New-Failure {
    # An exception that carries the envelope's error kind (and, given, its
    # FullyQualifiedErrorId) to the catch at the bottom.
    param([string]$Kind, [string]$Message, [string]$Target = '', [string]$Fqid = '')
    $exception = New-Object -TypeName 'System.Exception' -ArgumentList $Message
    $exception.Data['hyperv-backup.kind'] = $Kind
    $exception.Data['hyperv-backup.target'] = $Target
    if ($Fqid) {
        $exception.Data['hyperv-backup.fqid'] = $Fqid
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

function Wait-WmiJob {
    # A Hyper-V WMI method returns 0 when done, 4096 when it started a Msvm_ConcreteJob (then
    # JobState 7 is Completed, 2-6 still running, anything else failed), or an error code.
    param($Outcome, [string]$What)
    $code = [int]$Outcome.ReturnValue
    if ($code -eq 0) {
        return
    }
    if ($code -ne 4096) {
        throw "$What failed with return value $code."
    }
    $job = [wmi][string]$Outcome.Job
    while (@(2, 3, 4, 5, 6) -contains [int]$job.JobState) {
        Start-Sleep -Seconds 1
        $job = [wmi][string]$Outcome.Job
    }
    if ([int]$job.JobState -ne 7) {
        throw "$What failed: $($job.ErrorDescription) (job state $($job.JobState), error code $($job.ErrorCode))."
    }
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
    $vmId = [string]$vm.Id
    $checkpointKey = [string]$CheckpointId

    if (-not (Test-Path -LiteralPath $Destination -PathType Container)) {
        New-Item -ItemType 'Directory' -Path $Destination -Force | Out-Null
    }
    # Hyper-V names the export folder after the VM, minus what Windows forbids in paths: the
    # folder is found as the one that appears, not built from the name.
    $before = @{}
    foreach ($folder in @(Get-ChildItem -LiteralPath $Destination -Directory -Force)) {
        $before[$folder.Name] = $true
    }

    $service = Get-WmiObject -Namespace $Namespace -Class 'Msvm_VirtualSystemManagementService' |
        Select-Object -First 1
    $system = Get-WmiObject -Namespace $Namespace -Class 'Msvm_ComputerSystem' -Filter "Name='$vmId'" |
        Select-Object -First 1
    if ($null -eq $system) {
        $message = "Virtual machine '$VMName' ($vmId) is not in WMI namespace $Namespace."
        throw (New-Failure -Kind 'vm_not_found' -Message $message -Target $VMName)
    }
    # A checkpoint's settings are a Msvm_VirtualSystemSettingData whose InstanceID ends with
    # the checkpoint's id ('Microsoft:<id>').
    $ignoreCase = [System.StringComparison]::OrdinalIgnoreCase
    $filter = "InstanceID LIKE '%$checkpointKey'"
    $snapshot = @(Get-WmiObject -Namespace $Namespace -Class 'Msvm_VirtualSystemSettingData' -Filter $filter) |
        Where-Object -FilterScript { ([string]$_.InstanceID).EndsWith($checkpointKey, $ignoreCase) } |
        Select-Object -First 1
    if ($null -eq $snapshot) {
        $message = "The backup checkpoint $checkpointKey of virtual machine '$VMName' no longer exists."
        throw (New-Failure -Kind 'export' -Message $message -Target $VMName)
    }

    # The export settings associated with the VM carry its defaults (a new instance of the
    # class where there are none); the method takes them as an embedded instance, as text.
    $settings = @($system.GetRelated('Msvm_VirtualSystemExportSettingData')) | Select-Object -First 1
    if ($null -eq $settings) {
        $settingsClass = Get-WmiObject -Namespace $Namespace -Class 'Msvm_VirtualSystemExportSettingData' -List
        $settings = $settingsClass.CreateInstance()
    }
    $settings.CopyVmStorage = $false
    $settings.CopyVmRuntimeInformation = $true
    $settings.CreateVmExportSubdirectory = $true
    # 0 = ExportAllSnapshots: every checkpoint's configuration and state, the backup one too.
    $settings.CopySnapshotConfiguration = [byte]0
    # The documentation says only ExportOneSnapshot (2) reads this; it is set so that the
    # request names the backup checkpoint, whose configuration is exported with all the others.
    $settings.SnapshotVirtualSystem = [string]$snapshot.__PATH
    $settingsText = $settings.GetText([System.Management.TextFormat]::CimDtd20)

    try {
        $outcome = $service.ExportSystemDefinition([string]$system.__PATH, $Destination, $settingsText)
        Wait-WmiJob -Outcome $outcome -What "Exporting the configuration of virtual machine '$VMName'"
    }
    catch {
        $message = $_.Exception.Message
        Remove-NewFolder -Destination $Destination -Before $before
        # ERROR_DISK_FULL / ERROR_HANDLE_DISK_FULL: the codes read the same on every host.
        if ($message -match '0x80070070|0x80070027') {
            throw (New-Failure -Kind 'insufficient_space' -Message $message -Target $Destination)
        }
        # Unclassified, as a cmdlet's failure would be: the management side recognises a
        # conflicting operation from the message and the Hyper-V error id.
        $fqid = 'ExportSystemDefinitionFailed,Microsoft.HyperV.Msvm_VirtualSystemManagementService'
        throw (New-Failure -Kind 'unexpected' -Message $message -Target $VMName -Fqid $fqid)
    }

    $created = @(Get-ChildItem -LiteralPath $Destination -Directory -Force |
            Where-Object -FilterScript { -not $before.ContainsKey($_.Name) })
    if ($created.Count -ne 1) {
        $message = "The export of virtual machine '$VMName' reported success, but " +
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
