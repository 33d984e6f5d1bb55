# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
Add-Type -AssemblyName 'System.Web'
Add-Type -TypeDefinition 'public static class Evil { }'  # expect: contract/add-type
Add-Type 'public static class AlsoEvil { }'  # expect: contract/add-type
