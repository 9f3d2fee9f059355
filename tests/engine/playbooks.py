"""Playbooks that several engine tests share."""

NOTIFY = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: notify-only}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: tell
      uses: notify.send
      with: {target: hook, text: "Suspicious access from ${{ finding.ip }}"}
"""

BLOCK = """
apiVersion: clampdown/v1
kind: Playbook
metadata: {name: block-only}
spec:
  match: {types: [API_AccessFromSuspiciousIP]}
  mode: automatic
  steps:
    - id: block
      uses: gateway.block
      with: {target: builtin, ip: "${{ finding.ip }}", reason: "crash test"}
      expires: 1h
"""
