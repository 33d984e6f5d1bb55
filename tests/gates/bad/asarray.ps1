# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$json = @(Get-VM) | ConvertTo-Json -AsArray -Compress  # expect: ps51/ps7-parameter catalog/unknown-parameter
Write-Output $json
