# hyperv-backup-script: fixture
[CmdletBinding()]
param()

$ErrorActionPreference = 'Stop'
function Invoke-Step {
    process {  # expect: syntax/error
        Write-Output $_
    }
    clean {  # expect: ps51/clean-block
        Write-Output 'done'
    }
}
