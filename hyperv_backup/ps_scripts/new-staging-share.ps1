# hyperv-backup-script: new-staging-share
<#
.SYNOPSIS
    Shares a staging folder read-only to the backup account, so that the export can be read
    over SMB where the administrative shares (C$, D$ ...) are not allowed; or shares a VSS
    shadow copy's device, so that the shadow copy can be read over SMB at all (an SMB client
    cannot follow the folder link that exposes it on the host).
.PARAMETER Name
    The share's name: hyperv-backup-<letters, digits, '-'>. The prefix is what lets cleanup
    tell staging shares from the host's own; any other name is refused (ValidatePattern).
.PARAMETER Path
    The folder to share (the export's staging folder; it must exist), or the root of a shadow
    copy's device, exactly \\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy<digits>\ (the
    shadow copy must exist). Any other path that starts with '\' or '/' (UNC paths, other
    devices) is refused.
.PARAMETER ReadAccess
    The account that may read the share (DOMAIN\user): read access for it alone.
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    The share is temporary (gone when the host restarts, so a crash cannot leave it forever)
    and has no offline caching. A share of that name on the same folder is taken as it is
    (created=false: a retry); on another path it is an error. Files are still subject to
    NTFS permissions: the backup account created the staging folder, so it can read it; a
    shadow copy keeps the permissions its files had (the VM's folders grant Administrators).
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][ValidatePattern('^hyperv-backup-[A-Za-z0-9-]{1,66}$')][string]$Name,
    [Parameter(Mandatory = $true)][string]$Path,
    [Parameter(Mandatory = $true)][string]$ReadAccess
)

$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
# Windows PowerShell 5.1 adds an ETS "Count" member to arrays that makes ConvertTo-Json emit
# {"value": [...], "Count": n}; removing the type data restores plain JSON arrays.
Remove-TypeData -TypeName 'System.Array' -ErrorAction SilentlyContinue

function New-Failure {
    # An exception that carries the envelope's error kind to the catch at the bottom.
    param([string]$Kind, [string]$Message, [string]$Target = '')
    $exception = New-Object -TypeName 'System.Exception' -ArgumentList $Message
    $exception.Data['hyperv-backup.kind'] = $Kind
    $exception.Data['hyperv-backup.target'] = $Target
    return $exception
}

function Get-ShareByName {
    # Exact, case-insensitive match: -Name would read wildcard characters as wildcards.
    param([string]$ShareName)
    return Get-SmbShare | Where-Object -FilterScript { $_.Name -eq $ShareName } |
        Select-Object -First 1
}

try {
    # The whole string: \A and \z (not ^ and $, which also match before a final line break);
    # [0-9], not \d, which .NET also matches to other scripts' digits.
    $shadowDevice = '\A\\\\\?\\GLOBALROOT\\Device\\HarddiskVolumeShadowCopy[0-9]+\\\z'
    if ($Path -match $shadowDevice) {
        # A shadow copy's device is no folder: GetFullPath and Test-Path are not for it (.NET
        # Framework's path rules and the FileSystem provider of Windows PowerShell 5.1 do not
        # handle GLOBALROOT paths reliably), so it is checked against the shadow copies that
        # exist. The share's path keeps the trailing backslash: the shadow volume's root.
        $full = $Path.TrimEnd('\')
        $sharePath = "$full\"
        $shadow = @(Get-CimInstance -ClassName 'Win32_ShadowCopy' |
                Where-Object -FilterScript { ([string]$_.DeviceObject).TrimEnd('\') -eq $full })
        if ($shadow.Count -eq 0) {
            $message = "Cannot share '$Path' as '$Name': no shadow copy has that device on " +
                "host $env:COMPUTERNAME."
            throw (New-Failure -Kind 'shadow' -Message $message -Target $Path)
        }
    }
    elseif ($Path -match '\A[\\/]') {
        $message = "Refusing to share '$Path' as '$Name': a staging share's path is a folder " +
            "on a drive of host $env:COMPUTERNAME, or a shadow copy's device " +
            "(\\?\GLOBALROOT\Device\HarddiskVolumeShadowCopy<N>\). Nothing was shared."
        throw (New-Failure -Kind 'export' -Message $message -Target $Path)
    }
    else {
        $full = [System.IO.Path]::GetFullPath($Path).TrimEnd('\')
        $sharePath = $full
        if (-not (Test-Path -LiteralPath $full -PathType Container)) {
            $message = "Cannot share '$Path' as '$Name': no such folder on host $env:COMPUTERNAME."
            throw (New-Failure -Kind 'export' -Message $message -Target $Path)
        }
    }

    $created = $false
    $share = Get-ShareByName -ShareName $Name
    if ($null -ne $share) {
        if ([string]$share.Path.TrimEnd('\') -ne $full) {
            $message = "A share named '$Name' already exists on host $env:COMPUTERNAME for " +
                "'$($share.Path)', not for '$full'. Remove it (remove-staging-share) or " +
                "choose another name."
            throw (New-Failure -Kind 'export' -Message $message -Target $Name)
        }
    }
    else {
        $description = 'hyperv-backup staging share (temporary; removed when the backup ends)'
        $share = New-SmbShare -Name $Name -Path $sharePath -ReadAccess $ReadAccess -Temporary `
            -CachingMode 'None' -Description $description
        $created = $true
    }

    $result = [ordered]@{
        name     = [string]$share.Name
        path     = [string]$share.Path
        unc_path = "\\$env:COMPUTERNAME\$($share.Name)"
        created  = $created
    }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 4 -Compress
}
catch {
    $record = $_
    # A share that cannot be made fails the export's staging: ExportError on the client.
    $kind = 'export'
    $target = [string]$record.TargetObject
    if ($record.Exception.Data.Contains('hyperv-backup.kind')) {
        $kind = [string]$record.Exception.Data['hyperv-backup.kind']
        $target = [string]$record.Exception.Data['hyperv-backup.target']
    }
    elseif ($record.Exception -is [System.UnauthorizedAccessException]) {
        $kind = 'access_denied'
    }
    $failure = [ordered]@{
        kind    = $kind
        message = $record.Exception.Message
        fqid    = [string]$record.FullyQualifiedErrorId
        target  = $target
    }
    [ordered]@{ ok = $false; error = $failure } | ConvertTo-Json -Depth 4 -Compress
}
