//! Derive macros for [`event-store`](https://docs.rs/event-store): `#[derive(Event)]` for event
//! structs and `#[derive(Events)]` for enums of them. Use them through `event_store`, which
//! re-exports both.
//!
//! Misuse is reported as a compile error at the offending span; the macros never panic.

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields, LitInt, LitStr, Path, parse_macro_input};

const MAX_NAME_LEN: usize = 64;

/// Derives `event_store::Event` for a struct with named fields.
///
/// ```text
/// #[derive(Event, Serialize, Deserialize)]
/// #[event(namespace = "cmp-inventory", rename = "ItemAdded")]
/// struct Added { sku: String }
/// ```
///
/// Keys of `#[event(...)]` (several may share one attribute):
/// - `namespace = "…"` (required): `A–Z a–z 0–9 _ -`, starting with a letter or digit.
/// - `rename = "…"` (or `type = "…"`): the type name; the struct's name by default.
/// - `version = N`: the schema version events are written at (1 by default); see
///   `event_store::upcast`.
/// - `upcasters = "path"`: a function `fn() -> event_store::upcast::Upcasters` declaring how
///   older versions are read (built once, on first use); needs `version` of 2 or more.
/// - `crate = "path"`: where `event_store` is, when it is re-exported under another name.
/// - `subject = "field"`: the field that names the person the event's personal fields are about
///   (needed by `#[event(personal)]`).
///
/// On a field, `#[event(personal)]` marks personal data, stored sealed with its subject's key
/// (`event_store::erasure`) and read as `None` once the subject is forgotten: the field must be
/// an `Option`, and the struct must name its `subject`. Its JSON key is its name or its
/// `#[serde(rename = "…")]` (a container `rename_all` needs the field's own `rename`).
///
/// The original event store's spelling, `#[event_store(namespace = "…", rename = "…")]`, is
/// accepted too, so its event types compile unchanged; a key may be given once across both.
#[proc_macro_derive(Event, attributes(event, event_store))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_event(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Derives `event_store::Events` for an enum whose variants each wrap one `Event` type:
/// encoding and decoding dispatch on namespace and type, an unknown type is an
/// `Error::UnknownEventType`, and each variant gets a `From` impl.
///
/// ```text
/// #[derive(Events)]
/// enum CounterEvent { Incremented(Incremented), Decremented(Decremented) }
/// ```
#[proc_macro_derive(Events, attributes(event, event_store))]
pub fn derive_events(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand_events(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

#[derive(Default)]
struct Attrs {
    namespace: Option<LitStr>,
    rename: Option<LitStr>,
    version: Option<LitInt>,
    upcasters: Option<Path>,
    krate: Option<Path>,
    subject: Option<LitStr>,
}

fn parse_attrs(input: &DeriveInput, allow_names: bool) -> syn::Result<Attrs> {
    let mut out = Attrs::default();
    let ours = |a: &&syn::Attribute| a.path().is_ident("event") || a.path().is_ident("event_store");
    for attr in input.attrs.iter().filter(ours) {
        attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(ToString::to_string)
                .unwrap_or_default();
            match key.as_str() {
                "namespace" | "rename" | "type" | "version" | "upcasters" | "subject"
                    if !allow_names =>
                {
                    Err(meta.error(format!(
                        "`{key}` belongs on the event structs, not on an enum of events"
                    )))
                }
                "namespace" => set(&mut out.namespace, meta.value()?.parse()?, &meta.path),
                "rename" | "type" => set(&mut out.rename, meta.value()?.parse()?, &meta.path),
                "version" => set(&mut out.version, meta.value()?.parse()?, &meta.path),
                "subject" => set(&mut out.subject, meta.value()?.parse()?, &meta.path),
                "upcasters" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    set(&mut out.upcasters, lit.parse()?, &meta.path)
                }
                "crate" => {
                    let lit: LitStr = meta.value()?.parse()?;
                    set(&mut out.krate, lit.parse()?, &meta.path)
                }
                _ => Err(meta.error(
                    "unknown key; expected `namespace = \"…\"`, `rename = \"…\"`, `version = N`, `upcasters = \"…\"`, `subject = \"…\"` or `crate = \"…\"`",
                )),
            }
        })?;
    }
    Ok(out)
}

fn set<T>(slot: &mut Option<T>, value: T, path: &Path) -> syn::Result<()> {
    if slot.is_some() {
        return Err(syn::Error::new(path.span(), "this key is given twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn check_name(what: &str, name: &str, span: Span) -> syn::Result<()> {
    let first_ok = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphanumeric());
    let rest_ok = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !first_ok || !rest_ok {
        return Err(syn::Error::new(
            span,
            format!(
                "invalid {what} `{}`: use 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 _ -, starting with a letter or digit",
                name.escape_debug()
            ),
        ));
    }
    Ok(())
}

fn crate_path(attrs: &Attrs) -> TokenStream2 {
    match &attrs.krate {
        Some(p) => quote!(#p),
        None => quote!(::event_store),
    }
}

fn expand_event(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let attrs = parse_attrs(input, true)?;
    let ident = &input.ident;
    let fields = match &input.data {
        Data::Struct(s) => &s.fields,
        Data::Enum(_) => {
            return Err(syn::Error::new(
                ident.span(),
                "#[derive(Event)] is for structs; for an enum of events use #[derive(Events)]",
            ));
        }
        Data::Union(_) => {
            return Err(syn::Error::new(ident.span(), "an event cannot be a union"));
        }
    };
    match fields {
        Fields::Named(named) => {
            for f in &named.named {
                if let Some(name) = &f.ident
                    && (name == "event_namespace"
                        || name == "event_type"
                        || name == "event_version")
                {
                    return Err(syn::Error::new(
                        name.span(),
                        format!("`{name}` is reserved: the store writes it beside the fields"),
                    ));
                }
            }
        }
        Fields::Unit => {
            return Err(syn::Error::new(
                ident.span(),
                format!(
                    "an event's JSON is an object: write `struct {ident} {{}}` instead of a unit struct"
                ),
            ));
        }
        Fields::Unnamed(_) => {
            return Err(syn::Error::new(
                fields.span(),
                "an event's JSON is an object: use named fields",
            ));
        }
    }
    let Some(namespace) = &attrs.namespace else {
        return Err(syn::Error::new(
            ident.span(),
            "missing namespace: add #[event(namespace = \"…\")]",
        ));
    };
    check_name("namespace", &namespace.value(), namespace.span())?;
    let ty = match &attrs.rename {
        Some(lit) => {
            check_name("type", &lit.value(), lit.span())?;
            lit.value()
        }
        None => {
            let name = ident.to_string();
            let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
            check_name("type", &name, ident.span())?;
            name
        }
    };
    let krate = crate_path(&attrs);
    let ns = namespace.value();
    let (version, upcasters) = schema_version(&attrs, &krate)?;
    let (personal, subject) = personal_fields(input, fields, &attrs)?;
    let subject = match subject {
        Some(s) => quote!(::std::option::Option::Some(#s)),
        None => quote!(::std::option::Option::None),
    };
    let (impl_g, ty_g, where_c) = input.generics.split_for_impl();
    Ok(quote! {
        #[automatically_derived]
        impl #impl_g #krate::Event for #ident #ty_g #where_c {
            const NAMESPACE: &'static str = #ns;
            const TYPE: &'static str = #ty;
            const VERSION: u32 = #version;
            const PERSONAL: &'static [&'static str] = &[#(#personal),*];
            const SUBJECT: ::std::option::Option<&'static str> = #subject;
            #upcasters
        }
    })
}

/// The `#[serde(...)]` value of `key` on `attrs` (`rename = "…"`, `rename_all = "…"`), if any.
fn serde_value(attrs: &[syn::Attribute], key: &str) -> syn::Result<Option<LitStr>> {
    let mut found = None;
    for attr in attrs.iter().filter(|a| a.path().is_ident("serde")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident(key) && meta.input.peek(syn::Token![=]) {
                found = Some(meta.value()?.parse::<LitStr>()?);
                Ok(())
            } else {
                skip(&meta)
            }
        })?;
    }
    Ok(found)
}

/// Consumes a serde key's value (`= …` or `(…)`), whatever it is.
fn skip(meta: &syn::meta::ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: syn::Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip(&inner))?;
    }
    Ok(())
}

/// The JSON key of a named field: its `#[serde(rename)]`, else its name.
fn json_key(field: &syn::Field) -> syn::Result<String> {
    if let Some(rename) = serde_value(&field.attrs, "rename")? {
        return Ok(rename.value());
    }
    let name = field
        .ident
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    Ok(name.strip_prefix("r#").unwrap_or(&name).to_owned())
}

/// Whether a type is written `Option<…>` (by its last path segment).
fn is_option(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Path(p) if p.qself.is_none()
        && p.path.segments.last().is_some_and(|s| s.ident == "Option"))
}

/// The JSON keys of the `#[event(personal)]` fields, and of the `subject` field.
fn personal_fields(
    input: &DeriveInput,
    fields: &Fields,
    attrs: &Attrs,
) -> syn::Result<(Vec<String>, Option<String>)> {
    let renames_all = serde_value(&input.attrs, "rename_all")?.is_some();
    let mut personal = Vec::new();
    let mut subject = None;
    for field in fields {
        let mut marked = false;
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("event")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("personal") {
                    marked = true;
                    Ok(())
                } else {
                    Err(meta.error("unknown key on a field; expected `personal`"))
                }
            })?;
        }
        let name = field
            .ident
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let name = name.strip_prefix("r#").unwrap_or(&name).to_owned();
        let is_subject = attrs.subject.as_ref().is_some_and(|s| s.value() == name);
        if is_subject {
            subject = Some(json_key(field)?);
        }
        if !marked {
            continue;
        }
        if !is_option(&field.ty) {
            return Err(syn::Error::new(
                field.ty.span(),
                "a personal field must be an `Option`: it reads as `None` once its subject is forgotten",
            ));
        }
        if is_subject {
            return Err(syn::Error::new(
                field.span(),
                "the subject field cannot be personal: it names whose key seals the others",
            ));
        }
        if renames_all && serde_value(&field.attrs, "rename")?.is_none() {
            return Err(syn::Error::new(
                field.span(),
                "with `#[serde(rename_all)]`, name a personal field's key with `#[serde(rename = \"…\")]`",
            ));
        }
        personal.push(json_key(field)?);
    }
    match (&attrs.subject, subject.is_some(), personal.is_empty()) {
        (Some(lit), false, _) => Err(syn::Error::new(
            lit.span(),
            format!("no field `{}` to take the subject from", lit.value()),
        )),
        (None, _, false) => Err(syn::Error::new(
            input.ident.span(),
            "personal fields need a subject: add #[event(subject = \"field\")] naming the field that says whose data they are",
        )),
        _ => Ok((personal, subject)),
    }
}

/// The `version` and the `upcasters` function of an event struct.
fn schema_version(attrs: &Attrs, krate: &TokenStream2) -> syn::Result<(u32, TokenStream2)> {
    let version = match &attrs.version {
        Some(lit) => {
            let v: u32 = lit.base10_parse().map_err(|_| {
                syn::Error::new(
                    lit.span(),
                    "a schema version is an integer from 1 to 4294967295",
                )
            })?;
            if v == 0 {
                return Err(syn::Error::new(lit.span(), "schema versions start at 1"));
            }
            v
        }
        None => 1,
    };
    let upcasters = match &attrs.upcasters {
        Some(path) if version < 2 => {
            return Err(syn::Error::new(
                path.span(),
                "upcasters bring older versions to the current one: add `version = N` (2 or more)",
            ));
        }
        Some(path) => quote! {
            fn upcasters() -> &'static #krate::upcast::Upcasters {
                static UPCASTERS: ::std::sync::LazyLock<#krate::upcast::Upcasters> =
                    ::std::sync::LazyLock::new(#path);
                &UPCASTERS
            }
        },
        None => TokenStream2::new(),
    };
    Ok((version, upcasters))
}

/// Checks that need no generic parameter: each variant wraps an `Event`, and no two share a
/// namespace and type.
fn variant_checks(input: &DeriveInput, krate: &TokenStream2, types: &[&syn::Type]) -> TokenStream2 {
    if input.generics.params.is_empty() {
        let asserts = types.iter().map(|t| {
            quote_spanned! {t.span()=>
                const _: fn() = || { fn event<T: #krate::Event>() {} event::<#t>(); };
            }
        });
        quote! {
            #(#asserts)*
            const _: () = {
                if !#krate::__private::distinct(&[#(<#types as #krate::Event>::EVENT_TYPE),*]) {
                    panic!("two variants of this enum have the same namespace and type");
                }
            };
        }
    } else {
        TokenStream2::new()
    }
}

fn expand_events(input: &DeriveInput) -> syn::Result<TokenStream2> {
    let attrs = parse_attrs(input, false)?;
    let ident = &input.ident;
    let Data::Enum(data) = &input.data else {
        return Err(syn::Error::new(
            ident.span(),
            "#[derive(Events)] is for enums whose variants wrap event structs; derive `Event` on a struct",
        ));
    };
    if data.variants.is_empty() {
        return Err(syn::Error::new(
            ident.span(),
            "an enum of events needs at least one variant",
        ));
    }
    let krate = crate_path(&attrs);
    let mut names = Vec::new();
    let mut types = Vec::new();
    for v in &data.variants {
        match &v.fields {
            Fields::Unnamed(f) if f.unnamed.len() == 1 => {
                names.push(&v.ident);
                types.push(&f.unnamed[0].ty);
            }
            _ => {
                return Err(syn::Error::new(
                    v.span(),
                    format!(
                        "each variant wraps one event struct, like `{0}({0})`",
                        v.ident
                    ),
                ));
            }
        }
    }
    let (impl_g, ty_g, where_c) = input.generics.split_for_impl();
    let checks = variant_checks(input, &krate, &types);
    let from_impls = names.iter().zip(&types).map(|(n, t)| {
        quote! {
            #[automatically_derived]
            impl #impl_g ::core::convert::From<#t> for #ident #ty_g #where_c {
                fn from(e: #t) -> Self { Self::#n(e) }
            }
        }
    });
    Ok(quote! {
        #checks

        #[automatically_derived]
        impl #impl_g #krate::Events for #ident #ty_g #where_c {
            fn event_types() -> &'static [#krate::EventType] {
                const { &[#(<#types as #krate::Event>::EVENT_TYPE),*] }
            }

            fn namespace(&self) -> &'static str {
                match self { #(Self::#names(_) => <#types as #krate::Event>::NAMESPACE,)* }
            }

            fn event_type(&self) -> &'static str {
                match self { #(Self::#names(_) => <#types as #krate::Event>::TYPE,)* }
            }

            fn encode(&self) -> #krate::Result<#krate::__private::Value> {
                match self { #(Self::#names(e) => <#types as #krate::Events>::encode(e),)* }
            }

            fn personal(&self) -> #krate::erasure::Personal {
                match self { #(Self::#names(e) => <#types as #krate::Events>::personal(e),)* }
            }

            fn decode(
                namespace: &str,
                event_type: &str,
                data: &#krate::__private::Value,
            ) -> #krate::Result<Self> {
                #(
                    if <#types as #krate::Events>::handles(namespace, event_type) {
                        return <#types as #krate::Events>::decode(namespace, event_type, data).map(Self::#names);
                    }
                )*
                ::core::result::Result::Err(#krate::Error::UnknownEventType {
                    namespace: ::std::borrow::ToOwned::to_owned(namespace),
                    event_type: ::std::borrow::ToOwned::to_owned(event_type),
                })
            }

            fn handles(namespace: &str, event_type: &str) -> bool {
                #(<#types as #krate::Events>::handles(namespace, event_type))||*
            }

            fn read_types() -> ::std::vec::Vec<#krate::EventType> {
                let mut all = ::std::vec::Vec::new();
                #(
                    for t in <#types as #krate::Events>::read_types() {
                        if !all.contains(&t) {
                            all.push(t);
                        }
                    }
                )*
                all
            }

            fn upcaster_fingerprint() -> u64 {
                #krate::upcast::combine_fingerprints(&[
                    #(<#types as #krate::Events>::upcaster_fingerprint()),*
                ])
            }
        }

        #(#from_impls)*
    })
}
