# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$code = 'Get-VM'
# gate-allow: scriptblock-create the users own configured command, run as written
$allowed = [scriptblock]::Create($code)
$next = [scriptblock]::Create($code)  # expect: contract/invoke-expression
$unmarked = [scriptblock]::Create($code)  # expect: contract/invoke-expression
Write-Output $allowed $next $unmarked
