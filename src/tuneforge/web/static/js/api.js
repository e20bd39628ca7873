// The page's one way to the server: the same public API that scripts use, with the login cookie.

export class ApiError extends Error {
  constructor(status, detail, errors = []) {
    super(detail);
    this.status = status;
    this.errors = errors;
  }

  describe() {
    const fields = this.errors.map((e) => `${e.field}: ${e.message}`).join("; ");
    return fields ? `${this.message} (${fields})` : this.message;
  }
}

let onSignedOut = () => {};

export function whenSignedOut(callback) {
  onSignedOut = callback;
}

export async function api(path, { method = "GET", json, form, signal } = {}) {
  const options = { method, credentials: "same-origin", headers: { Accept: "application/json" }, signal };
  if (json !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(json);
  } else if (form) {
    options.body = form;
  }
  const response = await fetch(path, options);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) {
    const detail = (body && body.detail) || `${response.status} ${response.statusText}`;
    if (response.status === 401) onSignedOut(detail);
    throw new ApiError(response.status, detail, (body && body.errors) || []);
  }
  return body;
}

// Uploads go through XMLHttpRequest: fetch cannot report how much of a request body has been sent.
export function upload(path, form, onProgress) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    request.open("POST", path);
    request.withCredentials = true;
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress(event.loaded, event.total);
    });
    request.addEventListener("load", () => {
      let body = {};
      try { body = JSON.parse(request.responseText); } catch { body = { detail: request.responseText }; }
      if (request.status >= 200 && request.status < 300) resolve(body);
      else {
        if (request.status === 401) onSignedOut(body.detail);
        reject(new ApiError(request.status, body.detail || `${request.status}`, body.errors || []));
      }
    });
    request.addEventListener("error", () => reject(new ApiError(0, "The upload did not reach the server")));
    request.send(form);
  });
}

export function fileUrl(jobId, relativePath) {
  const encoded = relativePath.split("/").map(encodeURIComponent).join("/");
  return `/api/jobs/${encodeURIComponent(jobId)}/files/${encoded}`;
}
