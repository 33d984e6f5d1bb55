# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$page = Invoke-WebRequest -Uri 'https://example.invalid/' -SkipCertificateCheck  # expect: ps51/ps7-parameter catalog/unknown-parameter
Write-Output $page
