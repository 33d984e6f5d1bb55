# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$rows = Get-VM | Select-Object Name, State  # expect: syntax/error
Write-Output $rows
