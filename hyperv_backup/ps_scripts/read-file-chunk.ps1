# hyperv-backup-script: read-file-chunk
<#
.SYNOPSIS
    Reads up to Length bytes of a file from Offset and returns them base64-encoded: the
    PowerShell Remoting fallback for reading host files where SMB cannot be used.
.PARAMETER Path
    The file on the host.
.PARAMETER Offset
    Where to start, in bytes ([double]: PSRP carries Python's integers as 32-bit values).
.PARAMETER Length
    How many bytes to read at most (1 byte to 16 MiB).
.NOTES
    Windows PowerShell 5.1. Writes exactly one JSON envelope to the output stream.
    Slow by design (~20 MB/s): every byte is base64-encoded, wrapped in JSON and in PSRP's
    XML. The file is opened for reading and shared for reading, writing and deleting, so a
    file Hyper-V holds open can still be read. eof says whether the file ends after the bytes
    returned, as of this read; size is its length now.
#>
[CmdletBinding()]
param(
    [Parameter(Mandatory = $true)][string]$Path,
    [Parameter(Mandatory = $true)][ValidateRange(0, 9007199254740992)][double]$Offset,
    [Parameter(Mandatory = $true)][ValidateRange(1, 16777216)][int]$Length
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

try {
    if (-not (Test-Path -LiteralPath $Path -PathType Leaf)) {
        $message = "No file '$Path' on host $env:COMPUTERNAME."
        throw (New-Failure -Kind 'file_not_found' -Message $message -Target $Path)
    }
    $start = [long]$Offset
    $buffer = New-Object -TypeName 'byte[]' -ArgumentList $Length
    $count = 0
    $sharing = [System.IO.FileShare]'ReadWrite, Delete'
    $stream = [System.IO.File]::Open($Path, [System.IO.FileMode]::Open, [System.IO.FileAccess]::Read, $sharing)
    try {
        $size = $stream.Length
        if ($start -lt $size) {
            $null = $stream.Seek($start, [System.IO.SeekOrigin]::Begin)
            # Read returns what is at hand; loop until Length bytes or the end of the file.
            while ($count -lt $Length) {
                $read = $stream.Read($buffer, $count, $Length - $count)
                if ($read -le 0) {
                    break
                }
                $count += $read
            }
        }
    }
    finally {
        $stream.Dispose()
    }

    $result = [ordered]@{
        data = [System.Convert]::ToBase64String($buffer, 0, $count)
        eof  = (($start + $count) -ge $size)
        size = [double]$size
    }
    [ordered]@{ ok = $true; result = $result } | ConvertTo-Json -Depth 4 -Compress
}
catch {
    $record = $_
    $kind = 'unexpected'
    $target = [string]$record.TargetObject
    if ($record.Exception.Data.Contains('hyperv-backup.kind')) {
        $kind = [string]$record.Exception.Data['hyperv-backup.kind']
        $target = [string]$record.Exception.Data['hyperv-backup.target']
    }
    elseif ($record.Exception -is [System.UnauthorizedAccessException]) {
        $kind = 'access_denied'
    }
    elseif ($record.Exception -is [System.IO.FileNotFoundException]) {
        $kind = 'file_not_found'
    }
    $failure = [ordered]@{
        kind    = $kind
        message = $record.Exception.Message
        fqid    = [string]$record.FullyQualifiedErrorId
        target  = $target
    }
    [ordered]@{ ok = $false; error = $failure } | ConvertTo-Json -Depth 4 -Compress
}
