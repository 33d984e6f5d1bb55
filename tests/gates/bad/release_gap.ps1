# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$gpus = Get-VMGpuPartitionAdapter -VMName 'web01'  # expect: release/command
$vm = New-VM -Name 'web02' -GuestStateIsolationType 'TrustedLaunch'  # expect: release/parameter
Write-Output $gpus $vm
