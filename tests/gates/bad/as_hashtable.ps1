# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$settings = '{"a": 1}' | ConvertFrom-Json -AsHashtable  # expect: ps51/ps7-parameter catalog/unknown-parameter
Write-Output $settings
