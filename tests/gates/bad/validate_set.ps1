# hyperv-backup-script: fixture
[CmdletBinding()]
param(
    [ValidateSet('Fast', 'Safe')]
    [string]$Mode,
    [ValidateSet('before', 'after', 'during')]  # expect: contract/param-validateset
    [string]$Phase,
    [string]$Kind  # expect: contract/param-validateset
)

$ErrorActionPreference = 'Stop'
Write-Output $Mode $Phase $Kind
