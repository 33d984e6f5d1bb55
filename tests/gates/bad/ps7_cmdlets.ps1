# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$names = Get-VM | Join-String -Property 'Name' -Separator ', '  # expect: ps51/ps7-command catalog/unknown-command
$valid = Test-Json -Json '{}'  # expect: ps51/ps7-command catalog/unknown-command
Get-Error  # expect: ps51/ps7-command catalog/unknown-command
Write-Output $names $valid
