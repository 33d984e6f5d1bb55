# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$vms = @(Get-VM)
if ($vms.Count -gt 0) {
    Write-Output $vms  # expect: syntax/missing
