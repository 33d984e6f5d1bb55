# hyperv-backup-script: get-host-info
<#
.SYNOPSIS
    Describes the Hyper-V host: Windows edition and version, Hyper-V module, cluster membership.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    Win32_OperatingSystem.ProductType tells workstation (1) from server (2 = DC, 3 = server);
    hyperv-backup refuses workstations ("Client Hyper-V") on the management side.
#>
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 adds an ETS "Count" member to arrays that makes ConvertTo-Json emit
# {"value": [...], "Count": n}; removing the type data restores plain JSON arrays.
Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue

try {
    $os = Get-CimInstance -ClassName 'Win32_OperatingSystem'
    $computer = Get-CimInstance -ClassName 'Win32_ComputerSystem'

    $module = Get-Module -ListAvailable -Name 'Hyper-V' |
        Sort-Object -Property 'Version' -Descending |
        Select-Object -First 1

    # Cluster membership: the cluster service exists only on failover-cluster nodes, and the
    # MSCluster WMI namespace answers only while the node is a member.
    $clusterName = $null
    $clusterService = Get-Service -Name 'ClusSvc' -ErrorAction SilentlyContinue
    if ($null -ne $clusterService) {
        try {
            $cluster = Get-CimInstance -Namespace 'root/MSCluster' -ClassName 'MSCluster_Cluster'
            if ($null -ne $cluster) {
                $clusterName = [string]$cluster.Name
            }
        }
        catch {
            $clusterName = $null
        }
    }

    $domain = $null
    if ($computer.PartOfDomain) {
        $domain = [string]$computer.Domain
    }

    $moduleVersion = $null
    if ($null -ne $module) {
        $moduleVersion = $module.Version.ToString()
    }

    $result = [ordered]@{
        computer_name         = [string]$computer.Name
        domain                = $domain
        os_caption            = [string]$os.Caption
        os_version            = [string]$os.Version
        os_build              = [int]$os.BuildNumber
        product_type          = [int]$os.ProductType
        hyperv_module         = ($null -ne $module)
        hyperv_module_version = $moduleVersion
        cluster_name          = $clusterName
        powershell_version    = $PSVersionTable.PSVersion.ToString()
    }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 4 -Compress
}
catch {
    $record = $_
    $kind = 'unexpected'
    if ($record.Exception -is [System.UnauthorizedAccessException]) {
        $kind = 'access_denied'
    }
    $failure = [ordered]@{
        kind    = $kind
        message = $record.Exception.Message
        fqid    = [string]$record.FullyQualifiedErrorId
        target  = [string]$record.TargetObject
    }
    [ordered]@{ ok = $false; error = $failure } | ConvertTo-Json -Depth 4 -Compress
}
