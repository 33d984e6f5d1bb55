# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$names = Get-VM | ForEach-Object -Parallel { $_.Name }  # expect: ps51/ps7-parameter catalog/unknown-parameter
Write-Output $names
