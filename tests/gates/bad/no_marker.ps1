# A host script without its marker line.  # expect: contract/marker contract/cmdletbinding contract/error-action
param()

Write-Output 'hello'
