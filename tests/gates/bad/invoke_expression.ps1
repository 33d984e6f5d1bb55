# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$code = 'Get-VM'
Invoke-Expression -Command $code  # expect: contract/invoke-expression
iex $code  # expect: contract/invoke-expression alias/command
$block = [scriptblock]::Create($code)  # expect: contract/invoke-expression
Write-Output $block
