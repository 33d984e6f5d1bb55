# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
Get-VM -Name 'web01' && Write-Output 'found'  # expect: ps51/pipeline-chain
Get-VM -Name 'db01' || Write-Output 'missing'  # expect: ps51/pipeline-chain
