# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$vm = Get-VM -Name 'web01'
$name = ${vm}?.Name  # expect: ps51/null-conditional syntax/error
$first = $vm?[0]  # expect: ps51/null-conditional syntax/error
Write-Output $name $first
