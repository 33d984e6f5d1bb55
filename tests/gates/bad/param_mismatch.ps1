# hyperv-backup-script: fixture
[CmdletBinding()]
param(  # expect: contract/param-missing
    [string]$Name,  # expect: contract/param-type
    [Parameter(Mandatory)][switch]$Force,  # expect: contract/param-mandatory
    [guid]$vmid,  # expect: contract/param-name
    [Alias('Cnt')][int]$Count,  # expect: contract/param-attribute
    [string]$Extra  # expect: contract/param-extra
)

$ErrorActionPreference = 'Stop'
Write-Output $Name $Force $vmid $Count $Extra
