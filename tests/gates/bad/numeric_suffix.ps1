# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$large = @(Get-VHD -Path 'C:\VMs\web01.vhdx' | Where-Object -FilterScript { $_.Size -gt 1GB })  # expect: syntax/error
Write-Output $large
