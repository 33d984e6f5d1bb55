# hyperv-backup-script: get-backup-leftovers
<#
.SYNOPSIS
    Finds what earlier backup runs left on the host: checkpoints whose name starts with Prefix,
    on every VM and of every checkpoint type, staging folders named <Prefix>-*, and SMB shares
    named <Prefix>-* (staging shares, and the shares that expose shadow copies).
.PARAMETER Prefix
    The name prefix of hyperv-backup's checkpoints, staging folders and shares.
.PARAMETER StagingRoot
    The staging roots to look in; roots that do not exist are skipped.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    Recovery checkpoints (the kind backup applications make) are hidden from Hyper-V Manager
    and, on some releases, from Get-VMSnapshot without -SnapshotType: each type is asked for.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][ValidatePattern('^[A-Za-z0-9-]{3,32}$')][string]$Prefix,
    [string[]]$StagingRoot = @()
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 adds an ETS "Count" member to arrays that makes ConvertTo-Json emit
# {"value": [...], "Count": n}; removing the type data restores plain JSON arrays.
Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue

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

try {
    $ignoreCase = [System.StringComparison]::OrdinalIgnoreCase
    $checkpoints = New-Object -TypeName 'System.Collections.ArrayList'
    foreach ($vm in @(Get-VM)) {
        foreach ($checkpoint in @(Get-AllCheckpoint -VM $vm)) {
            if (-not ([string]$checkpoint.Name).StartsWith($Prefix, $ignoreCase)) {
                continue
            }
            [void]$checkpoints.Add([ordered]@{
                    vm_name       = [string]$vm.Name
                    vm_id         = [string]$vm.Id
                    id            = [string]$checkpoint.Id
                    name          = [string]$checkpoint.Name
                    snapshot_type = [string]$checkpoint.SnapshotType
                    created       = $checkpoint.CreationTime.ToUniversalTime().ToString('o')
                })
        }
    }

    $folders = New-Object -TypeName 'System.Collections.ArrayList'
    foreach ($root in $StagingRoot) {
        if (-not (Test-Path -LiteralPath $root -PathType Container)) {
            continue
        }
        # -Filter also matches 8.3 short names ('HYPERV~1'); the -like test keeps long names only.
        $pattern = "$Prefix-*"
        foreach ($folder in @(Get-ChildItem -LiteralPath $root -Directory -Filter $pattern -Force)) {
            if ($folder.Name -like $pattern) {
                [void]$folders.Add($folder.FullName)
            }
        }
    }

    # Shares live only while the Server service runs (every share hyperv-backup makes is
    # temporary): with the service stopped there are none, and Get-SmbShare would fail.
    $shares = New-Object -TypeName 'System.Collections.ArrayList'
    $server = Get-Service -Name 'LanmanServer' -ErrorAction 'SilentlyContinue'
    if ($null -ne $server -and [string]$server.Status -eq 'Running') {
        $pattern = "$Prefix-*"
        foreach ($share in @(Get-SmbShare)) {
            if ([string]$share.Name -like $pattern) {
                [void]$shares.Add([string]$share.Name)
            }
        }
    }

    $result = [ordered]@{
        checkpoints     = $checkpoints.ToArray()
        staging_folders = $folders.ToArray()
        staging_shares  = $shares.ToArray()
    }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 6 -Compress
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
