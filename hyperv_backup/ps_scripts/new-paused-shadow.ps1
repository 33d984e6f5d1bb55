# hyperv-backup-script: new-paused-shadow
<#
.SYNOPSIS
    Pause mode: pauses a running VM, takes a VSS shadow copy of each volume that holds its
    files, resumes it, and exposes each shadow copy as a folder link.
.PARAMETER VMName
    The VM's exact name (wildcard characters are taken literally).
.PARAMETER Volume
    The volumes to shadow, by drive letter ('D:\', 'D:' or 'D').
.PARAMETER LinkRoot
    The folder that receives one symbolic link per shadow copy, named by drive letter:
    <LinkRoot>\D points at the shadow copy of D:\.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    Everything that can be checked is checked before the VM is paused; while it is paused,
    only the shadow copies are taken, and Resume-VM runs in a finally block, so the VM is
    resumed even when a shadow copy fails. A VM that is not running is not paused
    (resumed=false, pause_seconds=0). When anything fails after shadow copies were made,
    they are deleted again before the failure is reported (kind 'shadow').
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$VMName,
    [Parameter(Mandatory = $true)][string[]]$Volume,
    [Parameter(Mandatory = $true)][string]$LinkRoot
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

function Get-TargetVM {
    # Get-VM -Name treats [ ] * ? as wildcards; comparing names finds 'web[1]' as written.
    param([string]$Name)
    $found = @(Get-VM | Where-Object -FilterScript { $_.Name -eq $Name })
    if ($found.Count -eq 0) {
        $message = "No virtual machine named '$Name' exists on host $env:COMPUTERNAME."
        throw (New-Failure -Kind 'vm_not_found' -Message $message -Target $Name)
    }
    if ($found.Count -gt 1) {
        $message = "$($found.Count) virtual machines are named '$Name' on host " +
            "$env:COMPUTERNAME; give them unique names so that a backup knows which one to take."
        throw (New-Failure -Kind 'unexpected' -Message $message -Target $Name)
    }
    return $found[0]
}

function Get-ShadowCreateError {
    # Win32_ShadowCopy.Create's documented return values.
    param([int]$Code)
    $reasons = @{
        1  = 'access denied'
        2  = 'invalid argument'
        3  = 'the volume was not found'
        4  = 'the volume is not supported'
        5  = 'the shadow copy context is not supported'
        6  = 'insufficient storage for the shadow copy'
        7  = 'the volume is in use'
        8  = 'the maximum number of shadow copies is reached'
        9  = 'another shadow copy operation is in progress'
        10 = 'a shadow copy provider vetoed the operation'
        11 = 'the shadow copy provider is not registered'
        12 = 'the shadow copy provider failed'
    }
    if ($reasons.ContainsKey($Code)) {
        return "$($reasons[$Code]) (return value $Code)"
    }
    return "unknown error (return value $Code)"
}

function Test-PathEntry {
    # True for anything at Path, a link whose target is gone included (Test-Path follows links).
    param([string]$Path)
    return ([System.IO.Directory]::Exists($Path) -or [System.IO.File]::Exists($Path))
}

function Remove-CreatedShadow {
    # Best effort: this runs while another failure is being reported.
    param($Shadows, $Links)
    foreach ($link in $Links) {
        try {
            (Get-Item -LiteralPath $link -Force).Delete()
        }
        catch {
            Write-Verbose -Message "Could not remove link '$link': $($_.Exception.Message)"
        }
    }
    foreach ($shadow in $Shadows) {
        try {
            Get-CimInstance -ClassName 'Win32_ShadowCopy' -Filter "ID='$($shadow.wmi_id)'" | Remove-CimInstance
        }
        catch {
            Write-Verbose -Message "Could not delete shadow copy $($shadow.wmi_id): $($_.Exception.Message)"
        }
    }
}

try {
    $vm = Get-TargetVM -Name $VMName

    # One shadow copy per drive letter; the link names need a letter.
    $plan = New-Object -TypeName 'System.Collections.ArrayList'
    $letters = @{}
    foreach ($name in $Volume) {
        $text = $name.Trim()
        if ($text -notmatch '^[A-Za-z](:\\?)?$') {
            $message = "Volume '$name' is not given by drive letter (such as 'D:\'); the " +
                "shadow copies are exposed under '$LinkRoot' by drive letter."
            throw (New-Failure -Kind 'shadow' -Message $message -Target $name)
        }
        $letter = $text.Substring(0, 1).ToUpperInvariant()
        if ($letters.ContainsKey($letter)) {
            continue
        }
        $letters[$letter] = $true
        if (-not (Test-Path -LiteralPath "${letter}:\" -PathType Container)) {
            $message = "Volume ${letter}:\ does not exist on host $env:COMPUTERNAME."
            throw (New-Failure -Kind 'shadow' -Message $message -Target $name)
        }
        $linkPath = [System.IO.Path]::Combine($LinkRoot, $letter)
        if (Test-PathEntry -Path $linkPath) {
            $message = "'$linkPath' already exists; remove the earlier shadow copy link first."
            throw (New-Failure -Kind 'shadow' -Message $message -Target $linkPath)
        }
        [void]$plan.Add(@{ volume = "${letter}:\"; link_path = $linkPath })
    }
    New-Item -ItemType 'Directory' -Path $LinkRoot -Force | Out-Null

    $shadows = New-Object -TypeName 'System.Collections.ArrayList'
    $links = New-Object -TypeName 'System.Collections.ArrayList'
    $paused = $false
    $resumed = $false
    $pauseSeconds = 0.0
    try {
        try {
            if ([string]$vm.State -eq 'Running') {
                Suspend-VM -VM $vm
                $paused = $true
                $stopwatch = [System.Diagnostics.Stopwatch]::StartNew()
            }
            foreach ($entry in $plan) {
                $arguments = @{ Volume = $entry.volume; Context = 'ClientAccessible' }
                try {
                    $outcome = Invoke-CimMethod -ClassName 'Win32_ShadowCopy' -MethodName 'Create' -Arguments $arguments
                }
                catch {
                    $message = "Creating a shadow copy of volume $($entry.volume) failed: " +
                        $_.Exception.Message
                    throw (New-Failure -Kind 'shadow' -Message $message -Target $entry.volume -Cause $_)
                }
                if ([int]$outcome.ReturnValue -ne 0) {
                    $reason = Get-ShadowCreateError -Code ([int]$outcome.ReturnValue)
                    $message = "Creating a shadow copy of volume $($entry.volume) failed: $reason."
                    throw (New-Failure -Kind 'shadow' -Message $message -Target $entry.volume)
                }
                [void]$shadows.Add(@{
                        wmi_id    = [string]$outcome.ShadowID
                        volume    = $entry.volume
                        link_path = $entry.link_path
                    })
            }
        }
        finally {
            if ($paused) {
                try {
                    Resume-VM -VM $vm
                }
                catch {
                    $message = "Could not resume virtual machine '$VMName' after pausing it for " +
                        "the shadow copies; it is still paused: $($_.Exception.Message)"
                    throw (New-Failure -Kind 'unexpected' -Message $message -Target $VMName -Cause $_)
                }
                $pauseSeconds = [double]$stopwatch.Elapsed.TotalSeconds
                $resumed = $true
            }
        }

        # The VM runs again: the rest takes the time it takes.
        $records = New-Object -TypeName 'System.Collections.ArrayList'
        foreach ($shadow in $shadows) {
            try {
                $copy = Get-CimInstance -ClassName 'Win32_ShadowCopy' -Filter "ID='$($shadow.wmi_id)'"
                $device = [string]$copy.DeviceObject
                if (-not $device) {
                    throw "Shadow copy $($shadow.wmi_id) has no device object; it may have been deleted."
                }
                # The trailing backslash makes the link point at the shadow volume's root folder.
                New-Item -ItemType 'SymbolicLink' -Path $shadow.link_path -Value "$device\" | Out-Null
                [void]$links.Add($shadow.link_path)
            }
            catch {
                $message = "Exposing the shadow copy of volume $($shadow.volume) as " +
                    "'$($shadow.link_path)' failed: $($_.Exception.Message)"
                throw (New-Failure -Kind 'shadow' -Message $message -Target $shadow.link_path -Cause $_)
            }
            [void]$records.Add([ordered]@{
                    id            = ([guid]$shadow.wmi_id).ToString()
                    volume        = $shadow.volume
                    device_object = $device
                    link_path     = $shadow.link_path
                })
        }
    }
    catch {
        $failure = $_
        Remove-CreatedShadow -Shadows $shadows -Links $links
        throw $failure
    }

    $result = [ordered]@{
        shadows       = $records.ToArray()
        pause_seconds = $pauseSeconds
        resumed       = $resumed
    }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 6 -Compress
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
