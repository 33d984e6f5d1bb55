# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
Get-VM &  # expect: ps51/background-operator syntax/error
