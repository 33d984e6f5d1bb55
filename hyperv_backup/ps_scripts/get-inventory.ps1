# hyperv-backup-script: get-inventory
<#
.SYNOPSIS
    Describes virtual machines: state, generation, integration services, checkpoint setting,
    hard disks with their differencing chains, pass-through disks, the checkpoint tree,
    Hyper-V Replica role and memory.
.PARAMETER Name
    Exact VM names or wildcard patterns. Empty: every VM on the host. An exact name that
    matches no VM fails with kind 'vm_not_found'; a pattern that matches nothing does not.
.PARAMETER Exact
    Treat every name literally, wildcard characters included (a VM may be named 'web[1]').
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    Enums, GUIDs and dates are converted to strings explicitly: 5.1's ConvertTo-Json writes
    enums as numbers and dates as "\/Date(...)\/".
#>
[CmdletBinding()]
param(
    [string[]]$Name = @(),
    [switch]$Exact
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 adds an ETS "Count" member to arrays that makes ConvertTo-Json emit
# {"value": [...], "Count": n}; removing the type data restores plain JSON arrays.
Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue

function Get-DiskChain {
    # The attached file first, then each parent (ParentPath) down to the base disk.
    param([string]$Path)
    $links = New-Object -TypeName 'System.Collections.ArrayList'
    $current = $Path
    while ($current) {
        if ($links.Count -ge 64) {
            throw "The differencing chain of '$Path' is longer than 64 files; is it circular?"
        }
        $vhd = Get-VHD -Path $current
        $link = [ordered]@{
            path       = [string]$vhd.Path
            vhd_type   = [string]$vhd.VhdType
            vhd_format = [string]$vhd.VhdFormat
            file_size  = [long]$vhd.FileSize
            size       = [long]$vhd.Size
        }
        [void]$links.Add($link)
        $current = $vhd.ParentPath
    }
    return $links.ToArray()
}

function ConvertTo-HardDiskRecord {
    param($Drive)
    # A pass-through drive has the host's DiskNumber and no virtual-disk file to follow.
    $isPassthrough = ($null -ne $Drive.DiskNumber)
    $chain = @()
    if ((-not $isPassthrough) -and $Drive.Path) {
        $chain = @(Get-DiskChain -Path $Drive.Path)
    }
    $diskNumber = $null
    if ($isPassthrough) {
        $diskNumber = [int]$Drive.DiskNumber
    }
    return [ordered]@{
        controller_type     = [string]$Drive.ControllerType
        controller_number   = [int]$Drive.ControllerNumber
        controller_location = [int]$Drive.ControllerLocation
        path                = [string]$Drive.Path
        is_passthrough      = $isPassthrough
        disk_number         = $diskNumber
        chain               = $chain
    }
}

function ConvertTo-CheckpointRecord {
    param($Snapshot)
    $parentId = $null
    if ($Snapshot.ParentSnapshotId) {
        $parentId = [string]$Snapshot.ParentSnapshotId
    }
    return [ordered]@{
        id            = [string]$Snapshot.Id
        name          = [string]$Snapshot.Name
        parent_id     = $parentId
        snapshot_type = [string]$Snapshot.SnapshotType
        created       = $Snapshot.CreationTime.ToUniversalTime().ToString('o')
    }
}

function ConvertTo-ReplicationRecord {
    param($VM)
    $mode = [string]$VM.ReplicationMode
    if (-not $mode) {
        $mode = 'None'
    }
    $record = [ordered]@{
        mode              = $mode
        state             = $null
        health            = $null
        primary_server    = $null
        replica_server    = $null
        relationship_type = $null
    }
    if ($mode -ne 'None') {
        # An extended relationship yields two objects; the first is the simple one.
        $replication = Get-VMReplication -VM $VM | Select-Object -First 1
        $record.state = [string]$replication.ReplicationState
        $record.health = [string]$replication.ReplicationHealth
        $record.primary_server = [string]$replication.PrimaryServer
        $record.replica_server = [string]$replication.ReplicaServer
        $record.relationship_type = [string]$replication.ReplicationRelationshipType
    }
    return $record
}

function ConvertTo-VMRecord {
    param($VM)
    $services = @(Get-VMIntegrationService -VM $VM | ForEach-Object -Process {
            [ordered]@{
                name             = [string]$_.Name
                id               = [string]$_.Id
                enabled          = [bool]$_.Enabled
                primary_status   = [string]$_.PrimaryStatusDescription
                secondary_status = [string]$_.SecondaryStatusDescription
            }
        })
    $disks = @(Get-VMHardDiskDrive -VM $VM | ForEach-Object -Process {
            ConvertTo-HardDiskRecord -Drive $_
        })
    $checkpoints = @(Get-VMSnapshot -VM $VM | ForEach-Object -Process {
            ConvertTo-CheckpointRecord -Snapshot $_
        })

    # Server 2012 R2 has no CheckpointType property: it knows standard checkpoints only.
    $checkpointType = [string]$VM.CheckpointType
    if (-not $checkpointType) {
        $checkpointType = 'Standard'
    }
    $parentCheckpointId = $null
    if ($VM.ParentSnapshotId) {
        $parentCheckpointId = [string]$VM.ParentSnapshotId
    }
    $state = [string]$VM.State
    $savedStates = @('Saved', 'FastSaved', 'SavedCritical', 'FastSavedCritical', 'Hibernated')

    return [ordered]@{
        id                       = [string]$VM.Id
        name                     = [string]$VM.Name
        state                    = $state
        generation               = [int]$VM.Generation
        configuration_version    = [string]$VM.Version
        path                     = [string]$VM.Path
        checkpoint_type          = $checkpointType
        checkpoint_file_location = [string]$VM.SnapshotFileLocation
        memory_startup           = [long]$VM.MemoryStartup
        memory_assigned          = [long]$VM.MemoryAssigned
        dynamic_memory           = [bool]$VM.DynamicMemoryEnabled
        has_saved_state          = ($savedStates -contains $state)
        integration_services     = $services
        hard_disks               = $disks
        checkpoints              = $checkpoints
        parent_checkpoint_id     = $parentCheckpointId
        replication              = ConvertTo-ReplicationRecord -VM $VM
    }
}

try {
    $allVMs = @(Get-VM)
    $selected = New-Object -TypeName 'System.Collections.ArrayList'
    $seen = @{}
    if ($Name.Count -eq 0) {
        foreach ($vm in $allVMs) {
            [void]$selected.Add($vm)
        }
    }
    else {
        foreach ($pattern in $Name) {
            $isWildcard = (-not $Exact) -and
                [System.Management.Automation.WildcardPattern]::ContainsWildcardCharacters($pattern)
            if ($isWildcard) {
                $matched = @($allVMs | Where-Object -FilterScript { $_.Name -like $pattern })
            }
            else {
                $matched = @($allVMs | Where-Object -FilterScript { $_.Name -eq $pattern })
                if ($matched.Count -eq 0) {
                    $failure = [ordered]@{
                        kind    = 'vm_not_found'
                        message = "No virtual machine named '$pattern' exists on host $env:COMPUTERNAME."
                        fqid    = 'InvalidParameter,Microsoft.HyperV.PowerShell.Commands.GetVM'
                        target  = $pattern
                    }
                    [ordered]@{ ok = $false; error = $failure } | ConvertTo-Json -Depth 4 -Compress
                    return
                }
            }
            foreach ($vm in $matched) {
                $key = [string]$vm.Id
                if (-not $seen.ContainsKey($key)) {
                    $seen[$key] = $true
                    [void]$selected.Add($vm)
                }
            }
        }
    }

    $records = @($selected | ForEach-Object -Process { ConvertTo-VMRecord -VM $_ })
    $result = [ordered]@{ vms = $records }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 12 -Compress
}
catch {
    $record = $_
    $kind = 'unexpected'
    if ($record.Exception -is [System.UnauthorizedAccessException]) {
        $kind = 'access_denied'
    }
    $failure = [ordered]@{
        kind    = $kind
        message = $record.Exception.Message
        fqid    = [string]$record.FullyQualifiedErrorId
        target  = [string]$record.TargetObject
    }
    [ordered]@{ ok = $false; error = $failure } | ConvertTo-Json -Depth 4 -Compress
}
