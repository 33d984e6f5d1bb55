# hyperv-backup-script: fixture
[CmdletBinding()]
param()

Get-VM  # expect: contract/error-action
$ErrorActionPreference = 'Stop'
