# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$files = gci -Path 'C:\VMs'  # expect: alias/command
$big = $files | ? { $_.Length -gt 1073741824 }  # expect: alias/command
$names = $big | % { $_.Name }  # expect: alias/command
$sorted = $names | sort  # expect: alias/command
$vms = Get-VM | where -Property 'State' -EQ 'Running' | select -Property 'Name'  # expect: alias/command alias/command
$sorted | foreach { echo $_ }  # expect: alias/command alias/command
Write-Output $vms
