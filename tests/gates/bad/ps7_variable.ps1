# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
if ($IsWindows) {  # expect: ps51/ps7-variable
    Write-Output "$($PSStyle.Bold)bold"  # expect: ps51/ps7-variable
}
