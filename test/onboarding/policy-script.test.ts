import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseConfig } from "../../src/config/load-config.js";
import { legacyPolicyScript, policyScriptFor, rbacPolicyScript, type PolicyScriptInput } from "../../src/onboarding/policy-script.js";
import { opathQuote, psQuote, sanitizeLabel, UnsafeScriptValueError } from "../../src/onboarding/powershell.js";
import { APP_ID, baseConfig, CONTOSO_TID } from "./fixtures.js";
import { assignedLiteral, skeleton, tokenize } from "./ps-tokens.js";
import { stringify } from "yaml";
import { itWithTool } from "../support/external-tools.js";

const benign: PolicyScriptInput = { tenantKey: "contoso", tenantId: CONTOSO_TID, appId: APP_ID, sender: "noreply@contoso.com", displayName: "Contoso Ltd" };

const HOSTILE_NAMES = [
  "O'Brien & Sons",
  "x'; Remove-Mailbox -Identity * -Confirm:$false; '",
  "$(Invoke-Expression 'calc')",
  "`$env:PATH `n `' backtick",
  "smart ’; Stop-Computer; ‘ quotes ‚‛",
  'double "quoted" $name',
  "line\nbreak\r\nand\ttab\u2028sep",
  "#> <# comment breakers",
];
const HOSTILE_SENDERS = ["o'brien@contoso.com", "a';$(Stop-Computer)`@contoso.com", "x'';'@contoso.com"];

const generators = [
  ["RBAC for Applications", rbacPolicyScript],
  ["ApplicationAccessPolicy (--legacy)", legacyPolicyScript],
] as const;

describe("psQuote", () => {
  it("when a value has quotes of any kind, then each is doubled inside one single-quoted literal", () => {
    expect(psQuote("O'Brien")).toBe("'O''Brien'");
    expect(psQuote("a’b‘c‚d‛e")).toBe("'a’’b‘‘c‚‚d‛‛e'");
    expect(psQuote("$(x); `y")).toBe("'$(x); `y'");
  });

  it.each(["a\nb", "a\rb", "a\u0000b", "a\u0085b", "a\u2028b", "a\u001bb"])("when a value contains a control character (%j), then it is refused", (v) => {
    expect(() => psQuote(v)).toThrow(UnsafeScriptValueError);
  });

  it("when an OPATH value has a quote, then it is doubled for OPATH; typographic quotes are refused", () => {
    expect(opathQuote("o'brien@contoso.com")).toBe("'o''brien@contoso.com'");
    expect(() => opathQuote("o’brien@contoso.com")).toThrow(UnsafeScriptValueError);
  });

  it("when a label has control characters, then they become single spaces", () => {
    expect(sanitizeLabel("a\n\r\tb\u2028c  d")).toBe("a b c d");
  });
});

describe.each(generators)("policy script: %s", (_name, generate) => {
  it("when generated, then it has no expanding strings or here-strings, only constant code and single-quoted literals", () => {
    const tokens = tokenize(generate(benign));
    expect(tokens.filter((t) => t.kind === "double" || t.kind === "herestring")).toEqual([]);
  });

  it("when values are hostile, then the code around them is byte-for-byte the same and each value comes back exactly", () => {
    const reference = skeleton(tokenize(generate(benign)));
    for (const displayName of HOSTILE_NAMES) {
      for (const sender of [benign.sender, ...HOSTILE_SENDERS]) {
        const script = generate({ ...benign, displayName, sender });
        const tokens = tokenize(script);
        expect(skeleton(tokens)).toBe(reference);
        expect(assignedLiteral(tokens, "Sender")).toBe(sender);
        expect(assignedLiteral(tokens, "AppId")).toBe(APP_ID);
        expect(assignedLiteral(tokens, "TenantId")).toBe(CONTOSO_TID);
        // No raw line break can have come from a value: every line is one the template has.
        expect(script.split("\n").length).toBe(generate(benign).split("\n").length);
      }
    }
  });

  it("when the input is not a plain tenant, app id, key or address, then no script is made", () => {
    expect(() => generate({ ...benign, appId: "'; evil" })).toThrow(/appId must be a GUID/);
    expect(() => generate({ ...benign, tenantId: "x'y" })).toThrow(/tenantId/);
    expect(() => generate({ ...benign, tenantKey: "a b" })).toThrow(/tenant key/);
    expect(() => generate({ ...benign, sender: "a\n@b.com" })).toThrow(/sender/);
    expect(() => generate({ ...benign, sender: "not-an-address" })).toThrow(/sender/);
  });

  it("when it ends, then it prints SUCCESS or FAILED and exits 1 on failure", () => {
    const script = generate(benign);
    expect(script).toContain("SUCCESS: the app can send only as ");
    expect(script).toContain("FAILED: ");
    expect(script).toMatch(/exit 1\n$/);
    expect(script).toContain("$ErrorActionPreference = 'Stop'");
  });

  itWithTool("pwsh", "when pwsh is installed, then it parses the script without errors", () => {
    const bin = "pwsh";
    const dir = mkdtempSync(join(tmpdir(), "nrr-ps-"));
    try {
      for (const displayName of HOSTILE_NAMES) {
        const file = join(dir, "s.ps1");
        writeFileSync(file, generate({ ...benign, displayName, sender: HOSTILE_SENDERS[1]! }));
        const r = spawnSync(
          bin,
          ["-NoProfile", "-Command", `$e=$null; [void][System.Management.Automation.Language.Parser]::ParseFile('${file}', [ref]$null, [ref]$e); if ($e.Count) { $e | % { $_.Message }; exit 1 }`],
          { encoding: "utf8" },
        );
        expect(r.stdout + r.stderr).toBe("");
        expect(r.status).toBe(0);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("RBAC for Applications script", () => {
  const script = rbacPolicyScript(benign);
  const tokens = tokenize(script);

  it("when generated, then it creates the pointer, scope and role assignment and tests them", () => {
    expect(script).toContain("Connect-ExchangeOnline");
    expect(script).toContain("Get-MgServicePrincipal -Filter ('appId eq ''{0}''' -f $AppId)");
    expect(script).toContain("New-ServicePrincipal -AppId $AppId -ObjectId $ServicePrincipalObjectId -DisplayName $AppName");
    expect(script).toContain("New-ManagementScope -Name $ScopeName -RecipientRestrictionFilter $RecipientFilter");
    expect(script).toContain("New-ManagementRoleAssignment -Name $AssignmentName -Role 'Application Mail.Send' -App $AppId -CustomResourceScope $ScopeName");
    expect(script).toContain("Test-ServicePrincipalAuthorization -Identity $AppId -Resource $Sender");
    expect(script).toContain("Get-Recipient -RecipientPreviewFilter $RecipientFilter");
    expect(assignedLiteral(tokens, "AppName")).toBe("noreply-relay (Contoso Ltd)");
    expect(assignedLiteral(tokens, "ScopeName")).toBe("noreply-relay contoso sender");
  });

  it("when generated, then the recipient filter matches the sender's primary address, quoted for OPATH inside a PowerShell literal", () => {
    expect(assignedLiteral(tokens, "RecipientFilter")).toBe("PrimarySmtpAddress -eq 'noreply@contoso.com'");
    const tricky = tokenize(rbacPolicyScript({ ...benign, sender: "o'brien@contoso.com" }));
    expect(assignedLiteral(tricky, "RecipientFilter")).toBe("PrimarySmtpAddress -eq 'o''brien@contoso.com'");
    expect(rbacPolicyScript({ ...benign, sender: "o'brien@contoso.com" })).toContain("$RecipientFilter = 'PrimarySmtpAddress -eq ''o''''brien@contoso.com'''");
  });

  it("when generated, then it explains that a tenant-wide Entra grant overrides the scope, checks for it, and removes it only with -RemoveEntraGrant", () => {
    expect(script).toMatch(/grants add up/);
    expect(script).toContain("[switch] $RemoveEntraGrant");
    expect(script).toContain("Get-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $ServicePrincipalObjectId -All");
    expect(script).toMatch(/elseif \(\$RemoveEntraGrant\) \{\s+foreach \(\$grant in \$entraGrants\) \{\s+Remove-MgServicePrincipalAppRoleAssignment/);
    expect(script).toContain("Write-Fail 'The app still has the tenant-wide Mail.Send application permission");
    expect(assignedLiteral(tokens, "GraphAppId")).toBe("00000003-0000-0000-c000-000000000000");
  });

  it("when object names would exceed Exchange's 64 characters, then they are shortened", () => {
    const long = tokenize(rbacPolicyScript({ ...benign, tenantKey: "k".repeat(64) }));
    expect(assignedLiteral(long, "ScopeName")!.length).toBeLessThanOrEqual(64);
    expect(assignedLiteral(long, "AssignmentName")!.length).toBeLessThanOrEqual(64);
  });
});

describe("ApplicationAccessPolicy script (--legacy)", () => {
  const script = legacyPolicyScript(benign);
  const tokens = tokenize(script);

  it("when generated, then it makes a mail-enabled security group with the sender, a RestrictAccess policy, and tests it", () => {
    expect(script).toContain("New-DistributionGroup -Name $GroupName -Alias $GroupAlias -Type Security -Members $Sender");
    expect(script).toContain(
      "New-ApplicationAccessPolicy -AppId $AppId -PolicyScopeGroupId ([string]$group.PrimarySmtpAddress) -AccessRight RestrictAccess -Description $PolicyDescription",
    );
    expect(script).toContain("Test-ApplicationAccessPolicy -Identity $Sender -AppId $AppId");
    expect(script).toContain("Test-ApplicationAccessPolicy -Identity $OtherMailbox -AppId $AppId");
    expect(assignedLiteral(tokens, "PolicyDescription")).toBe("noreply-relay: Contoso Ltd (contoso) may send only as noreply@contoso.com");
    expect(script).toMatch(/replaced Application Access Policies with RBAC for Applications/);
  });

  it("when generated, then it requires (not removes) the Entra Mail.Send grant", () => {
    expect(script).toContain("Write-Fail 'The app has no Mail.Send application permission in Microsoft Entra ID");
    expect(script).not.toContain("Remove-MgServicePrincipalAppRoleAssignment");
  });
});

describe("policyScriptFor", () => {
  const config = parseConfig(stringify(baseConfig("/nonexistent", new Date())));

  it("when the tenant has its own app, then the script uses that app's client id", () => {
    const tokens = tokenize(policyScriptFor(config, "fabrikam"));
    expect(assignedLiteral(tokens, "AppId")).toBe("99999999-8888-7777-6666-555555555555");
    expect(assignedLiteral(tokens, "TenantId")).toBe("fabrikam.com");
    expect(assignedLiteral(tokens, "Sender")).toBe("no-reply@fabrikam.com");
  });

  it("when the tenant key is unknown, then it says so", () => {
    expect(() => policyScriptFor(config, "nope")).toThrow(/no tenant "nope"/);
  });
});
