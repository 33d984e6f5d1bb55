# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$vm = Get-VMFrobnicator -Name 'web01'  # expect: catalog/unknown-command
robocopy.exe 'C:\a' 'C:\b'  # expect: catalog/unknown-command
. .\helpers.ps1  # expect: catalog/unknown-command
Write-Output $vm
