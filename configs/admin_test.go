package configs

import (
	"path/filepath"
	"testing"
)

// The admin section is checked without t.Parallel: the token may come from
// the environment, and these cases set it.
func TestValidateAdmin(t *testing.T) {
	tests := []struct {
		name string
		env  string // SOCIALROUTE_ADMIN_TOKEN
		yaml string
		want []problem // none: valid
	}{
		{"off by default", "", base(), nil},
		{"on with a token file", "", base(`admin:`, `  enabled: true`, `  token_file: admin.token`), nil},
		{"on with the token in the environment", "0123456789abcdef", base(`admin: {enabled: true}`), nil},
		{"on without a token", "", base(`admin:`, `  enabled: true`),
			[]problem{{"admin.token_file", 6, "is required when the admin endpoint is on"}}},
		{"insecure on loopback", "", base(`admin: {enabled: true, insecure_no_token: true, address: "127.0.0.1:0"}`), nil},
		{"insecure on localhost", "", base(`admin: {enabled: true, insecure_no_token: true, address: "localhost:9901"}`), nil},
		{"insecure on IPv6 loopback", "", base(`admin: {enabled: true, insecure_no_token: true, address: "[::1]:9901"}`), nil},
		{"insecure on the default address", "", base(`admin: {enabled: true, insecure_no_token: true}`), nil},
		{"insecure on every interface", "", base(`admin:`, `  enabled: true`, `  address: ":9901"`, `  insecure_no_token: true`),
			[]problem{{"admin.insecure_no_token", 8, "allowed only on a loopback address"}}},
		{"insecure on a public address", "", base(`admin:`, `  enabled: true`, `  address: "0.0.0.0:9901"`, `  insecure_no_token: true`),
			[]problem{{"admin.insecure_no_token", 8, `not "0.0.0.0:9901"`}}},
		{"bad address", "", base(`admin:`, `  enabled: true`, `  address: "http://h:1"`, `  token_file: t`),
			[]problem{{"admin.address", 7, "invalid address"}}},
		{"port out of range", "", base(`admin:`, `  enabled: true`, `  address: "127.0.0.1:70000"`, `  token_file: t`),
			[]problem{{"admin.address", 7, "port must be a number between 0 and 65535"}}},
		{"the listener's own address", "", base(`listen: {address: "127.0.0.1:8080"}`, `admin:`, `  enabled: true`, `  address: "127.0.0.1:8080"`, `  token_file: t`),
			[]problem{{"admin.address", 8, "is listen.address's too"}}},
		{"the listener's port on every interface", "", base(`listen: {address: ":8443"}`, `admin:`, `  enabled: true`, `  address: "127.0.0.1:8443"`, `  token_file: t`),
			[]problem{{"admin.address", 8, "is listen.address's too"}}},
		{"another port of the listener's host", "", base(`listen: {address: "127.0.0.1:8080"}`, `admin:`, `  enabled: true`, `  address: "127.0.0.1:9901"`, `  token_file: t`), nil},
		{"settings without enabled", "", base(`admin:`, `  token_file: t`),
			[]problem{{"admin.enabled", 6, "must be true when other admin settings are used"}}},
		{"misspelled field", "", base(`admin:`, `  enabeld: true`),
			[]problem{{"admin.enabeld", 6, `unknown field (did you mean "enabled"?)`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(AdminTokenEnv, tt.env)
			cfg, err := Parse([]byte(tt.yaml), "t.yaml")
			if tt.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				if cfg.Admin.Address == "" {
					t.Error("admin.address has no default")
				}
				return
			}
			checkProblems(t, "t.yaml", err, tt.want...)
		})
	}
}

func TestAdminDefaultsAndTokenPath(t *testing.T) {
	t.Parallel()
	var c Config
	c.ApplyDefaults()
	if c.Admin.Enabled || c.Admin.Address != "127.0.0.1:9901" {
		t.Fatalf("admin defaults = %+v", c.Admin)
	}
	for _, tt := range []struct{ path, file, want string }{
		{"", "", ""},
		{"/etc/socialroute/proxy.yaml", "", ""},
		{"/etc/socialroute/proxy.yaml", "admin.token", "/etc/socialroute/admin.token"},
		{"/etc/socialroute/proxy.yaml", "/run/secrets/token", "/run/secrets/token"},
		{"", "admin.token", "admin.token"},
	} {
		c := Config{Path: tt.path, Admin: Admin{TokenFile: tt.file}}
		if got := c.AdminTokenPath(); got != filepath.FromSlash(tt.want) {
			t.Errorf("AdminTokenPath(path %q, file %q) = %q, want %q", tt.path, tt.file, got, tt.want)
		}
	}
}
