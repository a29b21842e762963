//! Just enough of ELF64 (little-endian) to load bpf/turnd_xdp.o: the
//! program's section, its relocations, the map definitions in "maps" and
//! the license. Anything unexpected is an error, never a panic.

use std::collections::HashMap;

/// A map as the object defines it (`struct turnd_map_def`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapDef {
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
}

/// The loadable parts of the object.
#[derive(Debug)]
pub struct Object {
    /// The program's instructions, 8 bytes each.
    pub insns: Vec<u8>,
    pub license: String,
    pub maps: HashMap<String, MapDef>,
    /// (instruction index, map name) for every `ld_imm64` of a map.
    pub relocations: Vec<(usize, String)>,
}

#[derive(Debug, thiserror::Error)]
#[error("bad BPF object: {0}")]
pub struct ElfError(&'static str);

struct Section<'a> {
    name: &'a str,
    kind: u32,
    data: &'a [u8],
    link: u32,
    info: u32,
}

fn u16_at(b: &[u8], o: usize) -> Result<u16, ElfError> {
    b.get(o..o + 2)
        .map(|s| u16::from_le_bytes([s[0], s[1]]))
        .ok_or(ElfError("truncated"))
}
fn u32_at(b: &[u8], o: usize) -> Result<u32, ElfError> {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or(ElfError("truncated"))
}
fn u64_at(b: &[u8], o: usize) -> Result<u64, ElfError> {
    b.get(o..o + 8)
        .and_then(|s| s.try_into().ok())
        .map(u64::from_le_bytes)
        .ok_or(ElfError("truncated"))
}
fn cstr(b: &[u8], o: usize) -> Result<&str, ElfError> {
    let rest = b.get(o..).ok_or(ElfError("bad string offset"))?;
    let end = rest
        .iter()
        .position(|c| *c == 0)
        .ok_or(ElfError("bad string"))?;
    std::str::from_utf8(&rest[..end]).map_err(|_| ElfError("bad string"))
}
fn usize_of(v: u64) -> Result<usize, ElfError> {
    usize::try_from(v).map_err(|_| ElfError("offset too large"))
}

const SHT_SYMTAB: u32 = 2;
const SHT_REL: u32 = 9;

/// Reads the program in section `prog` of `bytes`.
pub fn parse(bytes: &[u8], prog: &str) -> Result<Object, ElfError> {
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err(ElfError("not a little-endian ELF64 file"));
    }
    let shoff = usize_of(u64_at(bytes, 0x28)?)?;
    let shentsize = usize::from(u16_at(bytes, 0x3a)?);
    let shnum = usize::from(u16_at(bytes, 0x3c)?);
    let shstrndx = usize::from(u16_at(bytes, 0x3e)?);
    let mut raw = Vec::with_capacity(shnum);
    for i in 0..shnum {
        let h = shoff + i * shentsize;
        let offset = usize_of(u64_at(bytes, h + 24)?)?;
        let size = usize_of(u64_at(bytes, h + 32)?)?;
        let kind = u32_at(bytes, h + 4)?;
        // SHT_NOBITS has no bytes in the file.
        let data = if kind == 8 {
            &[][..]
        } else {
            bytes
                .get(offset..offset + size)
                .ok_or(ElfError("section out of bounds"))?
        };
        raw.push((
            u32_at(bytes, h)?,
            kind,
            data,
            u32_at(bytes, h + 40)?,
            u32_at(bytes, h + 44)?,
        ));
    }
    let names = raw.get(shstrndx).ok_or(ElfError("no section names"))?.2;
    let mut sections = Vec::with_capacity(shnum);
    for (name, kind, data, link, info) in raw {
        sections.push(Section {
            name: cstr(names, name as usize)?,
            kind,
            data,
            link,
            info,
        });
    }
    let index = |name: &str| sections.iter().position(|s| s.name == name);
    let prog_index = index(prog).ok_or(ElfError("no program section"))?;
    let maps_index = index("maps").ok_or(ElfError("no maps section"))?;
    let license = index("license")
        .map(|i| cstr(sections[i].data, 0).map(str::to_string))
        .transpose()?
        .ok_or(ElfError("no license"))?;
    let symtab = sections
        .iter()
        .find(|s| s.kind == SHT_SYMTAB)
        .ok_or(ElfError("no symbol table"))?;
    let strtab = sections
        .get(symtab.link as usize)
        .ok_or(ElfError("no string table"))?
        .data;
    let symbol = |i: usize| -> Result<(&str, u16, u64), ElfError> {
        let o = i * 24;
        Ok((
            cstr(strtab, u32_at(symtab.data, o)? as usize)?,
            u16_at(symtab.data, o + 6)?,
            u64_at(symtab.data, o + 8)?,
        ))
    };

    let maps_data = sections[maps_index].data;
    let mut maps = HashMap::new();
    for i in 0..symtab.data.len() / 24 {
        let (name, shndx, value) = symbol(i)?;
        if usize::from(shndx) == maps_index && !name.is_empty() {
            let o = usize_of(value)?;
            maps.insert(
                name.to_string(),
                MapDef {
                    map_type: u32_at(maps_data, o)?,
                    key_size: u32_at(maps_data, o + 4)?,
                    value_size: u32_at(maps_data, o + 8)?,
                    max_entries: u32_at(maps_data, o + 12)?,
                },
            );
        }
    }

    let mut relocations = Vec::new();
    for rel in sections
        .iter()
        .filter(|s| s.kind == SHT_REL && s.info as usize == prog_index)
    {
        for r in rel.data.chunks_exact(16) {
            let offset = usize_of(u64_at(r, 0)?)?;
            let sym = (u64_at(r, 8)? >> 32) as usize;
            let (name, shndx, _) = symbol(sym)?;
            if usize::from(shndx) != maps_index {
                return Err(ElfError("relocation to something other than a map"));
            }
            relocations.push((offset / 8, name.to_string()));
        }
    }
    Ok(Object {
        insns: sections[prog_index].data.to_vec(),
        license,
        maps,
        relocations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_checked_in_object() {
        let o = parse(super::super::OBJECT, "xdp").unwrap();
        assert_eq!(o.license, "Dual MIT/GPL");
        assert_eq!(o.insns.len() % 8, 0);
        assert_eq!(o.maps["chan_to_udp"].key_size, 16);
        assert_eq!(o.maps["chan_to_udp"].value_size, 32);
        assert_eq!(o.maps["udp_to_chan"].key_size, 12);
        assert_eq!(o.maps["udp_to_chan"].value_size, 32);
        assert!(o
            .relocations
            .iter()
            .all(|(i, n)| { o.maps.contains_key(n) && o.insns[i * 8] == 0x18 }));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(parse(b"not elf", "xdp").is_err());
        let mut b = super::super::OBJECT.to_vec();
        b.truncate(200);
        assert!(parse(&b, "xdp").is_err());
    }
}
