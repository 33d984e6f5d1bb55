# hyperv-backup-script: invoke-hook
<#
.SYNOPSIS
    Runs a user's before/after command on the host and returns what it wrote.
.PARAMETER Command
    The PowerShell command text from the user's own configuration, run as written.
.PARAMETER Phase
    before_job, after_job, before_vm or after_vm.
.PARAMETER JobId
    The backup job's id.
.PARAMETER VMName
    The VM's name in the VM phases; an empty string in the job phases.
.PARAMETER VMId
    The VM's id in the VM phases; an empty string in the job phases.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    The command sees $VMName, $VMId, $JobId and $Phase as variables (they are this script's
    parameters); their values are never spliced into its text. It runs with
    $ErrorActionPreference = 'Stop', so any error it writes fails the hook (kind 'hook').
    Its output objects come back as text lines, formatted as PowerShell would show them.
    A command that calls `exit` ends this script as well, and no result comes back.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Command,
    [Parameter(Mandatory = $true)][ValidateSet('before_job', 'after_job', 'before_vm', 'after_vm')][string]$Phase,
    [Parameter(Mandatory = $true)][AllowEmptyString()][string]$JobId,
    [string]$VMName,
    [string]$VMId
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 adds an ETS "Count" member to arrays that makes ConvertTo-Json emit
# {"value": [...], "Count": n}; removing the type data restores plain JSON arrays.
Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue

function New-Failure {
    # An exception that carries the envelope's error kind to the catch at the bottom; with a
    # Cause, the original FullyQualifiedErrorId goes along.
    param([string]$Kind, [string]$Message, [string]$Target = '', $Cause = $null)
    $exception = New-Object -TypeName 'System.Exception' -ArgumentList $Message
    $exception.Data['hyperv-backup.kind'] = $Kind
    $exception.Data['hyperv-backup.target'] = $Target
    if ($null -ne $Cause) {
        $exception.Data['hyperv-backup.fqid'] = [string]$Cause.FullyQualifiedErrorId
    }
    return $exception
}

try {
    try {
        # gate-allow: scriptblock-create the user's own configured hook, run as written
        $hook = [scriptblock]::Create($Command)
        # Out-String formats objects as the console would; the width keeps table rows whole
        # (a remote session's default width is 80 columns).
        $lines = @(& $hook | Out-String -Stream -Width 4096 |
                Where-Object -FilterScript { $_.Trim() -ne '' })
    }
    catch {
        $cause = $_
        $exception = $cause.Exception
        # A syntax error arrives wrapped in the exception of the Create method call.
        if (($exception -is [System.Management.Automation.MethodInvocationException]) -and
            ($null -ne $exception.InnerException)) {
            $exception = $exception.InnerException
        }
        # The hook's own words: the management side says which hook of which phase failed.
        throw (New-Failure -Kind 'hook' -Message $exception.Message -Target $VMName -Cause $cause)
    }

    $result = [ordered]@{ output = @($lines | ForEach-Object -Process { [string]$_ }) }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 4 -Compress
}
catch {
    $record = $_
    $kind = 'unexpected'
    $fqid = [string]$record.FullyQualifiedErrorId
    $target = [string]$record.TargetObject
    $data = $record.Exception.Data
    if ($data.Contains('hyperv-backup.kind')) {
        $kind = [string]$data['hyperv-backup.kind']
        $target = [string]$data['hyperv-backup.target']
        if ($data.Contains('hyperv-backup.fqid')) {
            $fqid = [string]$data['hyperv-backup.fqid']
        }
    }
    elseif ($record.Exception -is [System.UnauthorizedAccessException]) {
        $kind = 'access_denied'
    }
    $failure = [ordered]@{
        kind    = $kind
        message = $record.Exception.Message
        fqid    = $fqid
        target  = $target
    }
    [ordered]@{ ok = $false; error = $failure } | ConvertTo-Json -Depth 4 -Compress
}
