{{/*
Checks of .Values.config that values.schema.json cannot express, run when the chart renders, so
`helm install` fails with the reason instead of the pod failing at start (streamd check-config would
exit 2 there). The schema (generated from the config models: python -m streamd.schemas --write)
already refuses unknown keys, bad durations ("5 minutes"), missing fields and wrong types.

Rules:
1. Every ${env:NAME} is wired: NAME is in secrets.env or extraEnv, or the pod gets a whole Secret
   (secrets.existingSecret, extraEnvFrom) whose keys the chart cannot see.
2. Every ${file:PATH} lies in a mounted Secret: /etc/streamd/secrets/<secrets.files[].name>/<file>,
   and <file> is one of that entry's items when it lists items.
3. Anything else that starts with "${" is refused, as streamd itself refuses it.
4. Source names are unique, sink names are unique; kafka.idempotence: true needs kafka.acks: all.
All problems are reported in one message, one per line.
*/}}
{{- define "streamd.validate" -}}
{{- $cfg := .Values.config | default dict }}
{{- $text := toYaml $cfg }}
{{- $problems := list }}
{{- $envNames := list }}
{{- range concat (.Values.secrets.env | default list) (.Values.extraEnv | default list) }}
{{- $envNames = append $envNames .name }}
{{- end }}
{{- $wholeSecret := or .Values.secrets.existingSecret .Values.extraEnvFrom }}
{{- $dir := include "streamd.secretsDir" . }}
{{- range regexFindAll "\\$\\{[^}]*\\}?" $text -1 }}
{{- $ref := . }}
{{- if regexMatch "^\\$\\{env:\\s*[A-Za-z_][A-Za-z0-9_]*\\s*\\}$" $ref }}
{{- $name := regexReplaceAll "^\\$\\{env:\\s*([A-Za-z0-9_]+)\\s*\\}$" $ref "${1}" }}
{{- if not (or $wholeSecret (has $name $envNames)) }}
{{- $problems = append $problems (printf "config: %s is not wired: add %s to secrets.env (or set secrets.existingSecret)" $ref $name) }}
{{- end }}
{{- else if regexMatch "^\\$\\{file:[^}]+\\}$" $ref }}
{{- $path := trim (regexReplaceAll "^\\$\\{file:([^}]+)\\}$" $ref "${1}") }}
{{- $found := false }}
{{- range $.Values.secrets.files | default list }}
{{- $prefix := printf "%s/%s/" $dir .name }}
{{- if hasPrefix $prefix $path }}
{{- $file := trimPrefix $prefix $path }}
{{- if not .items }}
{{- $found = true }}
{{- else }}
{{- range .items }}
{{- if eq (.path | default .key) $file }}{{ $found = true }}{{ end }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $found }}
{{- $problems = append $problems (printf "config: %s is not in a mounted Secret: add an entry to secrets.files (mounted at %s/<name>/)" $ref $dir) }}
{{- end }}
{{- else }}
{{- $problems = append $problems (printf "config: unrecognised substitution %s: use ${env:NAME} or ${file:/path}" $ref) }}
{{- end }}
{{- end }}
{{- range $section := list "sources" "sinks" }}
{{- $seen := list }}
{{- range $i, $item := (get $cfg $section) | default list }}
{{- if and (kindIs "map" $item) $item.name }}
{{- if has $item.name $seen }}
{{- $problems = append $problems (printf "config.%s[%d].name: duplicate name %q" $section $i $item.name) }}
{{- end }}
{{- $seen = append $seen $item.name }}
{{- end }}
{{- end }}
{{- end }}
{{- $kafka := $cfg.kafka | default dict }}
{{- if and (eq (toString $kafka.idempotence) "true") (not (has (toString ($kafka.acks | default "all")) (list "all" "-1"))) }}
{{- $problems = append $problems (printf "config.kafka: idempotence: true requires acks: all (got acks: %v)" $kafka.acks) }}
{{- end }}
{{- if $problems }}
{{- fail (printf "invalid streamd config:\n%s" (join "\n" $problems)) }}
{{- end }}
{{- end }}
