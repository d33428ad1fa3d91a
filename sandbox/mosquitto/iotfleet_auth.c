/*
 * iotfleet_auth: a Mosquitto 2.0 plugin (plugin API v5) that authorises MQTT clients the way AWS IoT
 * Core does, from the sandbox's IoT registry.
 *
 * - Identity = the client certificate (TLS, required by the listener): its id is the SHA-256 of its
 *   DER encoding, as AWS computes certificate ids.
 * - CONNECT is accepted only if the certificate is known and ACTIVE and its policies allow iot:Connect
 *   on client/<clientId>; publish, subscribe and delivery are checked against iot:Publish,
 *   iot:Subscribe and iot:Receive (explicit deny wins). The rules come from a state file that the
 *   sandbox writes (sandbox/policy_acl.py documents the format); it is reloaded when it changes and
 *   every connected client whose connect would now be refused is disconnected.
 * - Service certificates (plugin_opt_service_certs) may connect with any client id that starts with
 *   plugin_opt_service_prefix and do anything; they get no presence events.
 * - Presence events $aws/events/presence/{connected,disconnected}/<clientId> shaped like AWS's.
 * - Every publish of a device carries the MQTT v5 user property iotfleet-client-id = its client id.
 * - Connected clients are listed in plugin_opt_clients_file; a file dropped into
 *   plugin_opt_requests_dir naming a client id disconnects it (iot-data DeleteConnection).
 *
 * Options: acl_file, clients_file, versions_file, requests_dir, service_certs (comma separated
 * certificate ids), service_prefix.
 */
#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#include <mqtt_protocol.h>

#define CLIENT_ID_PROPERTY "iotfleet-client-id"
#define CLIENT_ID_VARIABLE "${iot:ClientId}"
#define FORMAT_HEADER "iotfleet-broker-acl 1"

enum action { ACT_CONNECT, ACT_PUBLISH, ACT_SUBSCRIBE, ACT_RECEIVE, ACT_COUNT };

struct rule {
	char *context; /* "*" or a thing name */
	bool deny;
	enum action action;
	char *pattern;
};

struct cert {
	char id[65];
	bool active;
	char **things;
	int thing_count;
	struct rule *rules;
	int rule_count;
};

struct acl {
	char *arn_prefix;
	struct cert *certs; /* sorted by id */
	int cert_count;
};

struct session {
	struct mosquitto *client;
	char *client_id;
	char cert_id[65];
	char session_id[33];
	char *address;
	long version;
	bool service;
	bool gone; /* disconnected; kept until the next tick, for the ACL check of its will */
	const char *kick_reason; /* set before we disconnect it ourselves */
};

struct version_entry {
	char *client_id;
	long version;
};

static mosquitto_plugin_id_t *plugin_id;
static char *acl_file, *clients_file, *versions_file, *requests_dir, *service_prefix;
static char **service_certs;
static int service_cert_count;
static struct acl current_acl;
static struct stat acl_stat;
static bool acl_loaded_once;
static struct session *sessions;
static int session_count, session_capacity;
static struct version_entry *versions;
static int version_count, version_capacity;
static long state_offset = -1; /* offset of struct mosquitto's `state`, found by probing; -2: not found */

/* ---------------------------------------------------------------- helpers */

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static long long now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* `*` matches any run of characters ('/' included), `?` one character; everything else literally. */
static bool glob_match(const char *pattern, const char *text)
{
	const char *star = NULL, *resume = NULL;
	while (*text) {
		if (*pattern == '*') {
			star = pattern++;
			resume = text;
		} else if (*pattern == '?' || *pattern == *text) {
			pattern++;
			text++;
		} else if (star) {
			pattern = star + 1;
			text = ++resume;
		} else {
			return false;
		}
	}
	while (*pattern == '*') pattern++;
	return *pattern == '\0';
}

static bool pattern_match(const char *pattern, const char *text, const char *client_id)
{
	const char *var = strstr(pattern, CLIENT_ID_VARIABLE);
	if (!var) return glob_match(pattern, text);
	/* substitute every occurrence of ${iot:ClientId} */
	size_t varlen = strlen(CLIENT_ID_VARIABLE), idlen = strlen(client_id), count = 0;
	for (const char *p = var; p; p = strstr(p + varlen, CLIENT_ID_VARIABLE)) count++;
	size_t size = strlen(pattern) + count * idlen + 1;
	char *buf = malloc(size), *out = buf;
	if (!buf) return false;
	const char *in = pattern;
	while ((var = strstr(in, CLIENT_ID_VARIABLE))) {
		memcpy(out, in, (size_t)(var - in));
		out += var - in;
		memcpy(out, client_id, idlen);
		out += idlen;
		in = var + varlen;
	}
	strcpy(out, in);
	bool result = glob_match(buf, text);
	free(buf);
	return result;
}

static void json_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
		if (*p == '"' || *p == '\\') fprintf(out, "\\%c", *p);
		else if (*p < 0x20) fprintf(out, "\\u%04x", *p);
		else fputc(*p, out);
	}
	fputc('"', out);
}

static bool certificate_id(const struct mosquitto *client, char out[65])
{
	X509 *cert = mosquitto_client_certificate(client);
	if (!cert) return false;
	unsigned char *der = NULL;
	int len = i2d_X509(cert, &der);
	X509_free(cert);
	if (len <= 0) return false;
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int digest_len = 0;
	bool ok = EVP_Digest(der, (size_t)len, digest, &digest_len, EVP_sha256(), NULL) == 1;
	OPENSSL_free(der);
	if (!ok) return false;
	for (unsigned int i = 0; i < digest_len && i < 32; i++) sprintf(out + 2 * i, "%02x", digest[i]);
	out[64] = '\0';
	return true;
}

/* Write `text` via a temporary file and rename, so readers never see half of it. */
static void write_atomically(const char *path, const char *text, size_t len)
{
	if (!path) return;
	size_t tmplen = strlen(path) + 16;
	char *tmp = malloc(tmplen);
	if (!tmp) return;
	snprintf(tmp, tmplen, "%s.tmp%d", path, (int)getpid());
	FILE *out = fopen(tmp, "w");
	if (out) {
		fwrite(text, 1, len, out);
		if (fclose(out) == 0 && rename(tmp, path) == 0) {
			free(tmp);
			return;
		}
	}
	mosquitto_log_printf(MOSQ_LOG_WARNING, "iotfleet_auth: cannot write %s: %s", path, strerror(errno));
	unlink(tmp);
	free(tmp);
}

/* ---------------------------------------------------------------- the ACL state file */

static void acl_free(struct acl *acl)
{
	for (int i = 0; i < acl->cert_count; i++) {
		struct cert *c = &acl->certs[i];
		for (int t = 0; t < c->thing_count; t++) free(c->things[t]);
		free(c->things);
		for (int r = 0; r < c->rule_count; r++) {
			free(c->rules[r].context);
			free(c->rules[r].pattern);
		}
		free(c->rules);
	}
	free(acl->certs);
	free(acl->arn_prefix);
	memset(acl, 0, sizeof(*acl));
}

static int cert_cmp(const void *a, const void *b)
{
	return strcmp(((const struct cert *)a)->id, ((const struct cert *)b)->id);
}

static int parse_action(const char *s)
{
	if (!strcmp(s, "connect")) return ACT_CONNECT;
	if (!strcmp(s, "publish")) return ACT_PUBLISH;
	if (!strcmp(s, "subscribe")) return ACT_SUBSCRIBE;
	if (!strcmp(s, "receive")) return ACT_RECEIVE;
	return -1;
}

/* Split `line` at tabs in place; return the number of fields (at most max). */
static int split_tabs(char *line, char **fields, int max)
{
	int n = 0;
	char *p = line;
	while (n < max) {
		fields[n++] = p;
		char *tab = strchr(p, '\t');
		if (!tab) break;
		*tab = '\0';
		p = tab + 1;
	}
	return n;
}

static bool acl_parse(FILE *in, struct acl *acl)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	int capacity = 0;
	struct cert *cur = NULL;
	bool header = false, ok = true;
	memset(acl, 0, sizeof(*acl));
	while ((len = getline(&line, &cap, in)) >= 0) {
		while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
		if (!header) {
			if (strcmp(line, FORMAT_HEADER) != 0) {
				ok = false;
				break;
			}
			header = true;
			continue;
		}
		char *f[6];
		int n = split_tabs(line, f, 6);
		if (!strcmp(f[0], "arn") && n >= 2) {
			free(acl->arn_prefix);
			acl->arn_prefix = strdup(f[1]);
		} else if (!strcmp(f[0], "cert") && n >= 3 && strlen(f[1]) == 64) {
			if (acl->cert_count == capacity) {
				capacity = capacity ? capacity * 2 : 64;
				struct cert *grown = realloc(acl->certs, sizeof(struct cert) * (size_t)capacity);
				if (!grown) {
					ok = false;
					break;
				}
				acl->certs = grown;
			}
			cur = &acl->certs[acl->cert_count++];
			memset(cur, 0, sizeof(*cur));
			memcpy(cur->id, f[1], 65);
			cur->active = !strcmp(f[2], "ACTIVE");
		} else if (!strcmp(f[0], "thing") && n >= 2 && cur) {
			char **grown = realloc(cur->things, sizeof(char *) * (size_t)(cur->thing_count + 1));
			if (!grown) {
				ok = false;
				break;
			}
			cur->things = grown;
			cur->things[cur->thing_count++] = strdup(f[1]);
		} else if (!strcmp(f[0], "rule") && n >= 5 && cur) {
			int action = parse_action(f[3]);
			if (action < 0) continue;
			struct rule *grown = realloc(cur->rules, sizeof(struct rule) * (size_t)(cur->rule_count + 1));
			if (!grown) {
				ok = false;
				break;
			}
			cur->rules = grown;
			struct rule *r = &cur->rules[cur->rule_count++];
			r->context = strdup(f[1]);
			r->deny = !strcmp(f[2], "deny");
			r->action = (enum action)action;
			r->pattern = strdup(f[4]);
		} else if (!strcmp(f[0], "end")) {
			cur = NULL;
		}
	}
	free(line);
	if (!header || !acl->arn_prefix) ok = false;
	if (!ok) {
		acl_free(acl);
		return false;
	}
	qsort(acl->certs, (size_t)acl->cert_count, sizeof(struct cert), cert_cmp);
	return true;
}

static const struct cert *find_cert(const char *id)
{
	struct cert key;
	memcpy(key.id, id, 65);
	return bsearch(&key, current_acl.certs, (size_t)current_acl.cert_count, sizeof(struct cert), cert_cmp);
}

static const char *RESOURCE_KIND[ACT_COUNT] = {"client", "topic", "topicfilter", "topic"};

static bool cert_allows(const struct cert *cert, const char *client_id, enum action action, const char *name)
{
	if (!cert || !cert->active || !current_acl.arn_prefix) return false;
	size_t size = strlen(current_acl.arn_prefix) + strlen(name) + 16;
	char *resource = malloc(size);
	if (!resource) return false;
	snprintf(resource, size, "%s:%s/%s", current_acl.arn_prefix, RESOURCE_KIND[action], name);
	bool allowed = false, denied = false;
	for (int i = 0; i < cert->rule_count && !denied; i++) {
		const struct rule *r = &cert->rules[i];
		if (r->action != action) continue;
		if (strcmp(r->context, "*") != 0 && strcmp(r->context, client_id) != 0) continue;
		if (r->deny ? true : !allowed) {
			if (pattern_match(r->pattern, resource, client_id)) {
				if (r->deny) denied = true;
				else allowed = true;
			}
		}
	}
	free(resource);
	return allowed && !denied;
}

static bool is_service_cert(const char *id)
{
	for (int i = 0; i < service_cert_count; i++) {
		if (!strcmp(service_certs[i], id)) return true;
	}
	return false;
}

static bool may_connect(const char *cert_id, const char *client_id)
{
	if (is_service_cert(cert_id)) {
		return service_prefix && !strncmp(client_id, service_prefix, strlen(service_prefix));
	}
	return cert_allows(find_cert(cert_id), client_id, ACT_CONNECT, client_id);
}

/* ---------------------------------------------------------------- sessions, presence */

static struct session *find_session(const struct mosquitto *client)
{
	for (int i = 0; i < session_count; i++) {
		if (sessions[i].client == client) return &sessions[i];
	}
	return NULL;
}

/* The live session with this client id, if any. */
static struct session *find_live(const char *client_id)
{
	for (int i = 0; i < session_count; i++) {
		if (!sessions[i].gone && !strcmp(sessions[i].client_id, client_id)) return &sessions[i];
	}
	return NULL;
}

static void write_clients_file(void)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	if (!out) return;
	for (int i = 0; i < session_count; i++) {
		struct session *s = &sessions[i];
		if (s->gone) continue;
		fprintf(out, "%s\t%s\t%s\t%s\n", s->client_id, s->cert_id, s->session_id, s->service ? "service" : "device");
	}
	fclose(out);
	write_atomically(clients_file, buf, len);
	free(buf);
}

static void load_versions(void)
{
	FILE *in = versions_file ? fopen(versions_file, "r") : NULL;
	if (!in) return;
	char *line = NULL;
	size_t cap = 0;
	ssize_t len;
	while ((len = getline(&line, &cap, in)) >= 0) {
		while (len > 0 && line[len - 1] == '\n') line[--len] = '\0';
		char *tab = strrchr(line, '\t');
		if (!tab) continue;
		*tab = '\0';
		if (version_count == version_capacity) {
			version_capacity = version_capacity ? version_capacity * 2 : 64;
			struct version_entry *grown = realloc(versions, sizeof(*versions) * (size_t)version_capacity);
			if (!grown) break;
			versions = grown;
		}
		versions[version_count].client_id = strdup(line);
		versions[version_count].version = strtol(tab + 1, NULL, 10);
		version_count++;
	}
	free(line);
	fclose(in);
}

/* The next versionNumber of `client_id`: grows with each of its connections, kept across restarts. */
static long next_version(const char *client_id)
{
	long version = 0;
	int i;
	for (i = 0; i < version_count; i++) {
		if (!strcmp(versions[i].client_id, client_id)) break;
	}
	if (i < version_count) {
		version = ++versions[i].version;
	} else {
		if (version_count == version_capacity) {
			version_capacity = version_capacity ? version_capacity * 2 : 64;
			struct version_entry *grown = realloc(versions, sizeof(*versions) * (size_t)version_capacity);
			if (!grown) return 0;
			versions = grown;
		}
		versions[version_count].client_id = strdup(client_id);
		versions[version_count].version = 0;
		version_count++;
	}
	char *buf = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&buf, &len);
	if (out) {
		for (int j = 0; j < version_count; j++) fprintf(out, "%s\t%ld\n", versions[j].client_id, versions[j].version);
		fclose(out);
		write_atomically(versions_file, buf, len);
		free(buf);
	}
	return version;
}

static void publish_presence(const struct session *s, bool connected, const char *reason)
{
	char *payload = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&payload, &len);
	if (!out) return;
	fputs("{\"clientId\":", out);
	json_string(out, s->client_id);
	fprintf(out, ",\"timestamp\":%lld,\"eventType\":\"%s\"", now_ms(), connected ? "connected" : "disconnected");
	if (!connected) {
		fprintf(out, ",\"clientInitiatedDisconnect\":%s", strcmp(reason, "CLIENT_INITIATED_DISCONNECT") ? "false" : "true");
	}
	fprintf(out, ",\"sessionIdentifier\":\"%s\",\"principalIdentifier\":\"%s\"", s->session_id, s->cert_id);
	if (!connected) {
		fputs(",\"disconnectReason\":", out);
		json_string(out, reason);
	}
	fputs(",\"ipAddress\":", out);
	json_string(out, s->address ? s->address : "");
	fprintf(out, ",\"versionNumber\":%ld}", s->version);
	fclose(out);

	const char *kind = connected ? "connected" : "disconnected";
	size_t topic_len = strlen(s->client_id) + 64;
	char *topic = malloc(topic_len);
	if (topic) {
		snprintf(topic, topic_len, "$aws/events/presence/%s/%s", kind, s->client_id);
		mosquitto_broker_publish_copy(NULL, topic, (int)len, payload, 1, false, NULL);
		free(topic);
	}
	free(payload);
}

static void remove_session(struct session *s)
{
	free(s->client_id);
	free(s->address);
	int index = (int)(s - sessions);
	memmove(&sessions[index], &sessions[index + 1], sizeof(struct session) * (size_t)(session_count - index - 1));
	session_count--;
}

/*
 * Mosquitto 2.0.11 tells plugins no disconnect reason (always -1). Its struct mosquitto is private,
 * but it begins (after a few ints) with `char *id; char *username; char *password; uint16_t keepalive;
 * uint16_t last_mid; enum mosquitto_client_state state;`: find where `id` is by comparing with the
 * public accessors, and read `state` next to it. Where the probe fails, reasons are less precise.
 */
static void probe_state_offset(const struct mosquitto *client)
{
	if (state_offset != -1) return;
	const char *id = mosquitto_client_id(client);
	const char *username = mosquitto_client_username(client);
	const unsigned char *base = (const unsigned char *)client;
	state_offset = -2;
	if (!id) return;
	for (long k = 8; k <= 64; k += 8) {
		const char *p_id, *p_user;
		uint16_t keepalive;
		memcpy(&p_id, base + k, sizeof(p_id));
		memcpy(&p_user, base + k + 8, sizeof(p_user));
		memcpy(&keepalive, base + k + 24, sizeof(keepalive));
		if (p_id == id && p_user == username && keepalive == (uint16_t)mosquitto_client_keepalive(client)) {
			state_offset = k + 28;
			return;
		}
	}
	mosquitto_log_printf(MOSQ_LOG_WARNING, "iotfleet_auth: client state not found; disconnect reasons are approximate");
}

static int client_state(const struct mosquitto *client)
{
	if (state_offset < 0) return -1;
	int state;
	memcpy(&state, (const unsigned char *)client + state_offset, sizeof(state));
	return state;
}

/* ---------------------------------------------------------------- reload, kicks */

static void kick(const char *client_id, const char *reason)
{
	struct session *s = find_live(client_id);
	if (s) s->kick_reason = reason;
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotfleet_auth: disconnecting %s (%s)", client_id, reason);
	mosquitto_kick_client_by_clientid(client_id, false);
}

static void reload_if_changed(void)
{
	struct stat st;
	if (!acl_file) return;
	if (stat(acl_file, &st) != 0) return; /* not written yet, or being replaced: keep what we have */
	if (acl_loaded_once && st.st_ino == acl_stat.st_ino && st.st_size == acl_stat.st_size
			&& st.st_mtim.tv_sec == acl_stat.st_mtim.tv_sec && st.st_mtim.tv_nsec == acl_stat.st_mtim.tv_nsec) {
		return;
	}
	FILE *in = fopen(acl_file, "r");
	if (!in) return;
	struct acl fresh;
	bool ok = acl_parse(in, &fresh);
	fclose(in);
	acl_stat = st;
	acl_loaded_once = true;
	if (!ok) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "iotfleet_auth: %s is malformed; keeping the previous rules", acl_file);
		return;
	}
	acl_free(&current_acl);
	current_acl = fresh;
	mosquitto_log_printf(MOSQ_LOG_INFO, "iotfleet_auth: loaded %d certificates from %s", fresh.cert_count, acl_file);

	/* Disconnect every client whose connect would now be refused. Collect first: a kick changes `sessions`. */
	char **refused = calloc((size_t)session_count + 1, sizeof(char *));
	int refused_count = 0;
	if (!refused) return;
	for (int i = 0; i < session_count; i++) {
		if (!sessions[i].gone && !sessions[i].kick_reason && !may_connect(sessions[i].cert_id, sessions[i].client_id)) {
			refused[refused_count++] = strdup(sessions[i].client_id);
		}
	}
	for (int i = 0; i < refused_count; i++) {
		kick(refused[i], "AUTH_ERROR");
		free(refused[i]);
	}
	free(refused);
}

/* Each file in requests_dir holds a client id to disconnect (DeleteConnection); handled, then removed. */
static void handle_requests(void)
{
	if (!requests_dir) return;
	DIR *dir = opendir(requests_dir);
	if (!dir) return;
	struct dirent *entry;
	while ((entry = readdir(dir))) {
		if (entry->d_name[0] == '.') continue;
		size_t plen = strlen(requests_dir) + strlen(entry->d_name) + 2;
		char *path = malloc(plen);
		if (!path) break;
		snprintf(path, plen, "%s/%s", requests_dir, entry->d_name);
		FILE *in = fopen(path, "r");
		if (in) {
			char *line = NULL;
			size_t cap = 0;
			ssize_t len = getline(&line, &cap, in);
			fclose(in);
			if (len > 0) {
				while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
				if (find_live(line)) kick(line, "SERVER_INITIATED_DISCONNECT");
			}
			free(line);
		}
		unlink(path);
		free(path);
	}
	closedir(dir);
}

/* ---------------------------------------------------------------- callbacks */

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_basic_auth *ed = event_data;
	const char *client_id = mosquitto_client_id(ed->client);
	char cert_id[65];

	reload_if_changed();
	probe_state_offset(ed->client);
	if (!client_id || !certificate_id(ed->client, cert_id)) {
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotfleet_auth: refused %s: no client certificate", client_id ? client_id : "?");
		return MOSQ_ERR_AUTH;
	}
	if (!may_connect(cert_id, client_id)) {
		const struct cert *cert = find_cert(cert_id);
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotfleet_auth: refused %s with certificate %s: %s", client_id, cert_id,
				is_service_cert(cert_id) ? "service client id must start with the service prefix"
				: !cert ? "unknown certificate"
				: !cert->active ? "certificate not ACTIVE"
				: "iot:Connect not allowed");
		return MOSQ_ERR_AUTH;
	}
	/* Another live session with this client id is taken over (Mosquitto disconnects it next). */
	for (int i = 0; i < session_count; i++) {
		struct session *old = &sessions[i];
		if (!old->gone && !strcmp(old->client_id, client_id) && old->client != ed->client && !old->kick_reason) {
			old->kick_reason = "DUPLICATE_CLIENTID";
		}
	}
	struct session *s = find_session(ed->client);
	if (s) remove_session(s); /* re-authentication of the same connection */
	if (session_count == session_capacity) {
		session_capacity = session_capacity ? session_capacity * 2 : 64;
		struct session *grown = realloc(sessions, sizeof(struct session) * (size_t)session_capacity);
		if (!grown) return MOSQ_ERR_NOMEM;
		sessions = grown;
	}
	s = &sessions[session_count++];
	memset(s, 0, sizeof(*s));
	s->client = ed->client;
	s->client_id = strdup(client_id);
	memcpy(s->cert_id, cert_id, 65);
	s->address = xstrdup(mosquitto_client_address(ed->client));
	s->service = is_service_cert(cert_id);
	unsigned char random[16];
	if (RAND_bytes(random, sizeof(random)) != 1) memset(random, 0, sizeof(random));
	for (int i = 0; i < 16; i++) sprintf(s->session_id + 2 * i, "%02x", random[i]);
	if (!s->service) {
		s->version = next_version(client_id);
		publish_presence(s, true, NULL);
	}
	write_clients_file();
	return MOSQ_ERR_SUCCESS;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_acl_check *ed = event_data;
	const struct session *s = find_session(ed->client);
	char cert_id[65];
	const char *client_id = mosquitto_client_id(ed->client);

	if (ed->access == MOSQ_ACL_UNSUBSCRIBE) return MOSQ_ERR_SUCCESS;
	/* A disconnected session answers only for the same client (its will), never for a new one at its address. */
	if (s && s->gone && (!client_id || strcmp(client_id, s->client_id) != 0)) s = NULL;
	if (s && s->service) return MOSQ_ERR_SUCCESS;
	if (s) {
		memcpy(cert_id, s->cert_id, 65);
	} else if (!client_id || !certificate_id(ed->client, cert_id)) {
		return MOSQ_ERR_ACL_DENIED;
	} else if (is_service_cert(cert_id)) {
		return MOSQ_ERR_SUCCESS;
	}
	enum action action;
	switch (ed->access) {
	case MOSQ_ACL_WRITE: action = ACT_PUBLISH; break;
	case MOSQ_ACL_READ: action = ACT_RECEIVE; break;
	case MOSQ_ACL_SUBSCRIBE: action = ACT_SUBSCRIBE; break;
	default: return MOSQ_ERR_ACL_DENIED;
	}
	const char *id = s ? s->client_id : client_id;
	if (cert_allows(find_cert(cert_id), id, action, ed->topic)) return MOSQ_ERR_SUCCESS;
	if (action != ACT_RECEIVE) {
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "iotfleet_auth: denied %s %s to %s", action == ACT_PUBLISH ? "publish" : "subscribe",
				ed->topic, id);
	}
	return MOSQ_ERR_ACL_DENIED;
}

static int on_message(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_message *ed = event_data;
	const struct session *s = find_session(ed->client);
	if (!s || s->service) return MOSQ_ERR_SUCCESS;
	/* Drop any iotfleet-client-id the client set itself, then add the real one. */
	mosquitto_property **link = &ed->properties;
	mosquitto_property *prop = ed->properties;
	while (prop) {
		mosquitto_property *next = (mosquitto_property *)mosquitto_property_next(prop);
		bool spoofed = false;
		if (mosquitto_property_identifier(prop) == MQTT_PROP_USER_PROPERTY) {
			char *name = NULL, *value = NULL;
			if (mosquitto_property_read_string_pair(prop, MQTT_PROP_USER_PROPERTY, &name, &value, false) == prop) {
				spoofed = name && !strcmp(name, CLIENT_ID_PROPERTY);
			}
			mosquitto_free(name);
			mosquitto_free(value);
		}
		if (spoofed) {
			/* `next` is the first member of Mosquitto's property struct: unlink this one and free it alone. */
			*link = next;
			*(mosquitto_property **)prop = NULL;
			mosquitto_property_free_all(&prop);
		} else {
			link = (mosquitto_property **)prop;
		}
		prop = next;
	}
	mosquitto_property_add_string_pair(&ed->properties, MQTT_PROP_USER_PROPERTY, CLIENT_ID_PROPERTY, s->client_id);
	return MOSQ_ERR_SUCCESS;
}

static int on_disconnect(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_disconnect *ed = event_data;
	struct session *s = find_session(ed->client);
	if (!s || s->gone) return MOSQ_ERR_SUCCESS;
	const char *reason = s->kick_reason;
	if (!reason) {
		switch (client_state(ed->client)) {
		case 2:  /* mosq_cs_disconnecting: the client sent DISCONNECT */
		case 18: /* mosq_cs_disconnect_with_will: DISCONNECT with reason "with will" */
			reason = "CLIENT_INITIATED_DISCONNECT";
			break;
		case 17: /* mosq_cs_duplicate */
			reason = "DUPLICATE_CLIENTID";
			break;
		default:
			reason = "CONNECTION_LOST";
		}
	}
	if (!s->service) publish_presence(s, false, reason);
	/* Mosquitto checks the client's will (if any) right after this, with its TLS already closed. */
	s->gone = true;
	write_clients_file();
	return MOSQ_ERR_SUCCESS;
}

static int on_tick(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)event_data;
	(void)userdata;
	reload_if_changed();
	handle_requests();
	for (int i = session_count - 1; i >= 0; i--) {
		if (sessions[i].gone) remove_session(&sessions[i]);
	}
	return MOSQ_ERR_SUCCESS;
}

/* ---------------------------------------------------------------- plugin entry points */

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for (int i = 0; i < supported_version_count; i++) {
		if (supported_versions[i] == 5) return 5;
	}
	return -1;
}

static void parse_service_certs(const char *value)
{
	char *copy = strdup(value), *save = NULL;
	for (char *tok = strtok_r(copy, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
		char **grown = realloc(service_certs, sizeof(char *) * (size_t)(service_cert_count + 1));
		if (!grown) break;
		service_certs = grown;
		service_certs[service_cert_count++] = strdup(tok);
	}
	free(copy);
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	plugin_id = identifier;
	for (int i = 0; i < opt_count; i++) {
		const char *key = opts[i].key, *value = opts[i].value;
		if (!strcmp(key, "acl_file")) acl_file = strdup(value);
		else if (!strcmp(key, "clients_file")) clients_file = strdup(value);
		else if (!strcmp(key, "versions_file")) versions_file = strdup(value);
		else if (!strcmp(key, "requests_dir")) requests_dir = strdup(value);
		else if (!strcmp(key, "service_certs")) parse_service_certs(value);
		else if (!strcmp(key, "service_prefix")) service_prefix = strdup(value);
	}
	if (!acl_file) {
		mosquitto_log_printf(MOSQ_LOG_ERR, "iotfleet_auth: plugin_opt_acl_file is required");
		return MOSQ_ERR_INVAL;
	}
	load_versions();
	reload_if_changed();
	write_clients_file();
	int rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
	if (!rc) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if (!rc) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
	if (!rc) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL, NULL);
	if (!rc) rc = mosquitto_callback_register(plugin_id, MOSQ_EVT_TICK, on_tick, NULL, NULL);
	return rc;
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_DISCONNECT, on_disconnect, NULL);
	mosquitto_callback_unregister(plugin_id, MOSQ_EVT_TICK, on_tick, NULL);
	acl_free(&current_acl);
	for (int i = 0; i < session_count; i++) {
		free(sessions[i].client_id);
		free(sessions[i].address);
	}
	free(sessions);
	sessions = NULL;
	session_count = session_capacity = 0;
	if (clients_file) unlink(clients_file);
	return MOSQ_ERR_SUCCESS;
}
