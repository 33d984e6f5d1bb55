# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$vm = Get-VM -Name 'web01'
Write-Output ($vm.DynamicMemoryEnabled ? 'dynamic' : 'static')  # expect: ps51/ternary syntax/error
