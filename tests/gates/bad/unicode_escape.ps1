# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
Write-Output "done `u{2713}"  # expect: ps51/unicode-escape
