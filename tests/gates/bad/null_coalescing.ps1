# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$path = $null
$path = $path ?? 'C:\Backups'  # expect: ps51/null-coalescing syntax/error
$count = $null
$count ??= 0  # expect: ps51/null-coalescing syntax/error
Write-Output $path $count
