"""A minimal Confluent-compatible schema registry for the Avro tests: the
subset of the REST API that Avro producers and consumers use, kept in
memory.

  POST /subjects/{subject}/versions   {"schema": "..."} -> {"id": n}
  POST /subjects/{subject}            {"schema": "..."} -> the registered version (lookup)
  GET  /schemas/ids/{id}              -> {"schema": "..."}
  GET  /schemas/ids/{id}/schema       -> the schema itself
  GET  /subjects                      -> ["subject", ...]
  GET  /subjects/{subject}/versions   -> [1, 2, ...]
  GET  /subjects/{subject}/versions/{n|latest}
                                      -> {"subject", "version", "id", "schema"}
  GET  /config                        -> {"compatibilityLevel": "NONE"}

Registering the same schema (as parsed JSON) again returns its existing id,
under any subject, as the real registry does.

usage: schema_registry.py [--port P] [--verbose]
Listens on 127.0.0.1 (port 0 by default: the OS chooses) and prints the
port it listens on as the first line of stdout.
"""

import argparse
import json
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class Registry:
    """Schemas by id and subjects' versions, guarded by one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.schemas = []  # id - 1 -> (schema text, schema type)
        self.ids = {}  # canonical schema -> id
        self.subjects = {}  # subject -> [id of version 1, id of version 2, ...]

    @staticmethod
    def canonical(schema, schema_type):
        try:
            text = json.dumps(json.loads(schema), sort_keys=True, separators=(",", ":"))
        except ValueError:
            text = schema
        return (schema_type, text)

    def register(self, subject, schema, schema_type):
        with self.lock:
            key = self.canonical(schema, schema_type)
            schema_id = self.ids.get(key)
            if schema_id is None:
                self.schemas.append((schema, schema_type))
                schema_id = len(self.schemas)
                self.ids[key] = schema_id
            versions = self.subjects.setdefault(subject, [])
            if schema_id not in versions:
                versions.append(schema_id)
            return schema_id, versions.index(schema_id) + 1

    def lookup(self, subject, schema, schema_type):
        with self.lock:
            schema_id = self.ids.get(self.canonical(schema, schema_type))
            versions = self.subjects.get(subject, [])
            if schema_id is None or schema_id not in versions:
                return None
            return schema_id, versions.index(schema_id) + 1

    def schema(self, schema_id):
        with self.lock:
            if 1 <= schema_id <= len(self.schemas):
                return self.schemas[schema_id - 1]
            return None

    def version(self, subject, version):
        with self.lock:
            versions = self.subjects.get(subject)
            if not versions:
                return None
            index = len(versions) if version == "latest" else int(version)
            if not 1 <= index <= len(versions):
                return None
            schema_id = versions[index - 1]
            return schema_id, index, self.schemas[schema_id - 1]


def version_body(subject, schema_id, version, schema, schema_type):
    body = {"subject": subject, "version": version, "id": schema_id, "schema": schema}
    if schema_type != "AVRO":
        body["schemaType"] = schema_type
    return body


class Handler(BaseHTTPRequestHandler):
    registry = Registry()
    verbose = False

    def log_message(self, format, *args):
        if self.verbose:
            sys.stderr.write("schema registry: " + format % args + "\n")

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def not_found(self, code, message):
        self.reply(404, {"error_code": code, "message": message})

    def path_parts(self):
        return [unquote(p) for p in urlparse(self.path).path.strip("/").split("/") if p]

    def request_schema(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
            schema = body["schema"]
        except (ValueError, KeyError, TypeError):
            self.reply(422, {"error_code": 42201, "message": "expected a JSON body with 'schema'"})
            return None
        return schema, body.get("schemaType", "AVRO")

    def do_POST(self):
        parts = self.path_parts()
        if len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            request = self.request_schema()
            if request is None:
                return
            schema_id, _ = self.registry.register(parts[1], *request)
            self.reply(200, {"id": schema_id})
        elif len(parts) == 2 and parts[0] == "subjects":
            request = self.request_schema()
            if request is None:
                return
            found = self.registry.lookup(parts[1], *request)
            if found is None:
                self.not_found(40403, f"schema not found under subject {parts[1]!r}")
            else:
                self.reply(200, version_body(parts[1], found[0], found[1], *request))
        else:
            self.not_found(404, f"no route for POST {self.path}")

    def do_GET(self):
        parts = self.path_parts()
        if parts == ["subjects"]:
            with self.registry.lock:
                self.reply(200, sorted(self.registry.subjects))
        elif parts == ["config"]:
            self.reply(200, {"compatibilityLevel": "NONE"})
        elif len(parts) in (3, 4) and parts[:2] == ["schemas", "ids"] and parts[2].isdigit():
            found = self.registry.schema(int(parts[2]))
            if found is None:
                self.not_found(40403, f"schema {parts[2]} not found")
            elif len(parts) == 4 and parts[3] == "schema":
                self.reply(200, json.loads(found[0]))
            elif len(parts) == 3:
                body = {"schema": found[0]}
                if found[1] != "AVRO":
                    body["schemaType"] = found[1]
                self.reply(200, body)
            else:
                self.not_found(404, f"no route for GET {self.path}")
        elif len(parts) == 3 and parts[0] == "subjects" and parts[2] == "versions":
            with self.registry.lock:
                versions = self.registry.subjects.get(parts[1])
            if not versions:
                self.not_found(40401, f"subject {parts[1]!r} not found")
            else:
                self.reply(200, list(range(1, len(versions) + 1)))
        elif (
            len(parts) == 4
            and parts[0] == "subjects"
            and parts[2] == "versions"
            and (parts[3] == "latest" or re.fullmatch(r"\d+", parts[3]))
        ):
            found = self.registry.version(parts[1], parts[3])
            if found is None:
                self.not_found(40402, f"version {parts[3]} of subject {parts[1]!r} not found")
            else:
                schema_id, version, (schema, schema_type) = found
                self.reply(200, version_body(parts[1], schema_id, version, schema, schema_type))
        else:
            self.not_found(404, f"no route for GET {self.path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log each request to stderr")
    args = parser.parse_args()
    Handler.verbose = args.verbose
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
