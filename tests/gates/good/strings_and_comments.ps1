# hyperv-backup-script: fixture
<#
.SYNOPSIS
    Mentions PowerShell 7 syntax only where it is not code: $a ?? $b, $c ? 1 : 2, $x?.Name,
    Get-X && Get-Y || Get-Z, ForEach-Object -Parallel, clean { }, `u{2713}, $PSStyle, gci.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory)][string[]]$Name,
    [int]$Depth = 4,
    [switch]$Force
)

$ErrorActionPreference = 'Stop'  # not 'Continue' ?? 'Stop' && never || ever
$ProgressPreference = 'SilentlyContinue'

# $fallback = $given ?? 'default'; Get-VM && Write-Output 'ok'
$single = 'a ?? b && c || d ? e : f $x?.y `u{2713} # not a comment'
$double = "it's `"quoted`" ?? && || `$PSStyle ``u{2713} '#' $($single.Length)"
$doubled = 'it''s ?? still && one string'
$verbatim = @'
$a ?? $b && $c ? 1 : 2 '@ is not the end
Get-VM | ForEach-Object -Parallel { $_ } `u{2713}
'@
$expandable = @"
 "@ is not the end either: $($Name.Count) ?? && ||
"@
$braced = ${ErrorActionPreference}
$range = 0..($Depth - 1)
$wildcards = Get-ChildItem -Path 'C:\VMs' -Filter '??.vhdx'
$selected = Get-VM | Select-Object -Property 'Name', 'State' -First $Depth
$hash = @{ clean = { 1 }; ok = $true }
$pair = 1, 2
$none = $null -eq $selected

function Get-Label {
    [CmdletBinding()]
    param([Parameter(Mandatory)][string]$Text)
    return "[$Text]"
}

$label = Get-Label -Text 'vm' -ErrorAction 'Stop'
$running = Get-VM -Name $Name | Where-Object -FilterScript { $_.State -eq 'Running' }
$json = [ordered]@{ ok = $true; result = @($running | ForEach-Object -Process { $_.Name }) } |
    ConvertTo-Json -Depth $Depth -Compress
if ($Force) {
    Write-Output $json $label $double $verbatim $expandable $braced $range $wildcards $hash $pair $none
}
