# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$vm = Get-VM -VMName 'web01'  # expect: alias/parameter
$disks = Get-VMHardDiskDrive -VM $vm -EA 'SilentlyContinue'  # expect: alias/parameter
$all = Get-VM -Comp 'localhost'  # expect: alias/parameter-prefix
Write-Output $disks $all
