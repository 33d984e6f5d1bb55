# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
function Get-Label {
    param([string]$Text)
    return "[$Text]"
}

$vm = Get-VM -Nmae 'web01'  # expect: catalog/unknown-parameter
$any = Get-VM -C 'localhost'  # expect: catalog/ambiguous-parameter
$label = Get-Label -Txt 'x'  # expect: catalog/unknown-parameter
Write-Output $vm $any $label
